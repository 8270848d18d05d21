// Keeps infermesh_worker a valid library until its first sources land; removed then.
namespace infermesh::worker {}
