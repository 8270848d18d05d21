// A Beast basic_parser that writes straight into an http::Request: no intermediate
// beast::http::fields, and the Request's strings keep their capacity across requests.
#pragma once

#include <cstdint>
#include <string_view>

#include <boost/beast/http/basic_parser.hpp>

#include "http/message.h"

namespace infermesh::http::internal {

class RequestParser final : public boost::beast::http::basic_parser<true> {
 public:
  using error_code = boost::beast::error_code;
  using string_view = boost::beast::string_view;

  // `req` must outlive the parser; its fields are overwritten.
  explicit RequestParser(Request* req);

  bool expect_continue() const { return expect_continue_; }
  int version() const { return version_; }

 private:
  void on_request_impl(boost::beast::http::verb method, string_view method_str, string_view target,
                       int version, error_code& ec) override;
  void on_response_impl(int code, string_view reason, int version, error_code& ec) override;
  void on_field_impl(boost::beast::http::field name, string_view name_string, string_view value,
                     error_code& ec) override;
  void on_header_impl(error_code& ec) override;
  void on_body_init_impl(const boost::optional<std::uint64_t>& content_length,
                         error_code& ec) override;
  std::size_t on_body_impl(string_view body, error_code& ec) override;
  void on_chunk_header_impl(std::uint64_t size, string_view extensions, error_code& ec) override;
  std::size_t on_chunk_body_impl(std::uint64_t remain, string_view body, error_code& ec) override;
  void on_finish_impl(error_code& ec) override;

  Request* req_;
  size_t fields_ = 0;
  bool header_done_ = false;
  bool expect_continue_ = false;
  int version_ = 11;
};

}  // namespace infermesh::http::internal
