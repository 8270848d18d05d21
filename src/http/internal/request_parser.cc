#include "http/internal/request_parser.h"

#include <boost/beast/http/error.hpp>

namespace infermesh::http::internal {
namespace beasthttp = boost::beast::http;

namespace {

void AssignLower(std::string* out, std::string_view in) {
  out->resize(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    (*out)[i] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c;
  }
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + ('a' - 'A'));
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + ('a' - 'A'));
    if (x != y) return false;
  }
  return true;
}

}  // namespace

RequestParser::RequestParser(Request* req) : req_(req) { eager(true); }

void RequestParser::on_request_impl(beasthttp::verb, string_view method_str, string_view target,
                                    int version, error_code& ec) {
  version_ = version;
  req_->version = version;
  req_->method.assign(method_str.data(), method_str.size());
  std::string_view t(target.data(), target.size());
  // Absolute-form ("http://host/path") is legal for requests; keep the path.
  if (!t.empty() && t.front() != '/') {
    size_t scheme = t.find("://");
    if (scheme == std::string_view::npos) {
      ec = beasthttp::error::bad_target;
      return;
    }
    size_t slash = t.find('/', scheme + 3);
    t = slash == std::string_view::npos ? std::string_view("/") : t.substr(slash);
  }
  size_t q = t.find('?');
  if (q == std::string_view::npos) {
    req_->path.assign(t);
    req_->query.clear();
  } else {
    req_->path.assign(t.substr(0, q));
    req_->query.assign(t.substr(q + 1));
  }
}

void RequestParser::on_response_impl(int, string_view, int, error_code& ec) {
  ec = beasthttp::error::bad_version;  // never called for a request parser
}

void RequestParser::on_field_impl(beasthttp::field name, string_view name_string, string_view value,
                                  error_code&) {
  auto& headers = req_->headers;
  if (fields_ == headers.size()) headers.emplace_back();
  auto& [n, v] = headers[fields_++];
  AssignLower(&n, std::string_view(name_string.data(), name_string.size()));
  v.assign(value.data(), value.size());
  if (!header_done_ && name == beasthttp::field::expect &&
      EqualsIgnoreCase(std::string_view(value.data(), value.size()), "100-continue")) {
    expect_continue_ = true;
  }
}

void RequestParser::on_header_impl(error_code&) {
  header_done_ = true;
  req_->headers.resize(fields_);  // drop leftovers from the previous request
}

void RequestParser::on_body_init_impl(const boost::optional<std::uint64_t>& content_length,
                                      error_code&) {
  // Bounded by body_limit, which the base class checked before calling us.
  if (content_length) req_->body.reserve(static_cast<size_t>(*content_length));
}

std::size_t RequestParser::on_body_impl(string_view body, error_code&) {
  req_->body.append(body.data(), body.size());
  return body.size();
}

void RequestParser::on_chunk_header_impl(std::uint64_t, string_view, error_code&) {}

std::size_t RequestParser::on_chunk_body_impl(std::uint64_t, string_view body, error_code&) {
  req_->body.append(body.data(), body.size());
  return body.size();
}

void RequestParser::on_finish_impl(error_code&) {
  // Trailer fields (chunked) were appended after on_header_impl; keep them.
  req_->headers.resize(fields_);
}

}  // namespace infermesh::http::internal
