// Keeps infermesh_http a valid library until its first sources land; removed then.
namespace infermesh::http {}
