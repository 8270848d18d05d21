// The worker's runtime ↔ KServe type table against the codec's table: a model's metadata
// can only advertise types the codec reads and writes, and a type the runtime cannot run
// is a 400 that names it.
#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "http/api/api_error.h"
#include "http/api/kserve.h"
#include "runtime/tensor.h"
#include "worker/internal/worker_impl.h"

namespace infermesh::worker {
namespace {

using Impl = WorkerService::Impl;

TEST(WorkerKServeTypes, EveryAdvertisableTypeIsAcceptedByTheCodec) {
  int checked = 0;
  for (int v = 0; v <= 32; ++v) {
    const auto t = static_cast<runtime::DataType>(v);
    if (!runtime::IsSupportedStorageType(t)) continue;
    SCOPED_TRACE(runtime::DataTypeName(t));
    // What GET /v2/models/{m} would say for an input or output of this type.
    const std::string name = Impl::KServeTypeName(t);
    const http::api::KServeDataType* row = http::api::FindKServeDataType(name);
    ASSERT_NE(row, nullptr) << name << " is advertised but unknown to the codec";
    EXPECT_EQ(static_cast<size_t>(row->element_size), runtime::DataTypeSize(t));
    // A client sends it back: parsed, then mapped to the same runtime type.
    const std::string data = row->kind == http::api::KServeKind::kBool ? "[true,false]" : "[1,0]";
    auto req = http::api::ParseKServeInferRequest(R"({"inputs":[{"name":"x","datatype":")" + name +
                                                  R"(","shape":[2],"data":)" + data + "}]}");
    ASSERT_TRUE(req.ok()) << req.error().status << " " << req.error().message;
    auto back = Impl::RuntimeType(name);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, t);
    // The model produces it: a runtime tensor of this type serializes (no 500).
    runtime::Tensor out = runtime::Tensor::Empty(t, {2});
    std::memset(out.raw_data(), 0, out.nbytes());
    http::api::TensorData td{"y", name, {2}, {}};
    const auto* p = static_cast<const uint8_t*>(out.raw_data());
    td.bytes.assign(p, p + out.nbytes());
    auto body = http::api::SerializeKServeInferResponse({"m", "1", "", {td}});
    EXPECT_TRUE(body.ok()) << body.error().status << " " << body.error().message;
    ++checked;
  }
  EXPECT_GE(checked, 13);  // f32 f16 bf16 f64 i8 i16 i32 i64 u8 u16 u32 u64 bool
}

TEST(WorkerKServeTypes, TypeTheRuntimeCannotRunIs400NamingIt) {
  // BYTES is valid KServe (the codec reads it) but no runtime tensor holds strings.
  ASSERT_NE(http::api::FindKServeDataType("BYTES"), nullptr);
  auto r = Impl::RuntimeType("BYTES");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("BYTES"), std::string::npos);
  const http::api::ApiError e =
      http::api::ForApi(http::api::ApiErrorFromStatus(r.status()), http::api::ApiFamily::kKServe);
  EXPECT_EQ(e.status, 400);
  EXPECT_NE(e.message.find("BYTES"), std::string::npos);
}

}  // namespace
}  // namespace infermesh::worker
