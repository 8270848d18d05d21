// Method-aware router over path segments: exact segments and `{param}` segments.
//
//   auto router = std::make_shared<Router>();
//   router->Add("GET", "/v2/models/{model}/ready", HandleReady);
//   router->Add("POST", "/embed", HandleEmbed);
//
// Matching prefers an exact segment over a parameter at each position, and a route
// that accepts the method over one that does not. An unknown path is 404; a known
// path with another method is 405 with `allow` listing the methods. Paths are
// compared byte-wise and are not normalized ("/embed/" is not "/embed"). Router is
// immutable once handed to the server, so Find() needs no locking.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "http/message.h"

namespace infermesh::http {

class Router {
 public:
  struct Match {
    const Handler* handler = nullptr;    // null when status != 200
    const std::string* route = nullptr;  // the matched pattern, when handler != null
    int status = 404;                    // 200, 404 or 405
    std::string allow;                   // for 405: "GET, POST"
  };

  Router();
  ~Router();
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // `pattern` starts with '/'; a segment "{name}" captures one segment. Adding the
  // same method and pattern again replaces the handler.
  void Add(std::string method, std::string pattern, Handler handler);

  // Fills `params` (cleared first, when given) with the percent-decoded captures.
  Match Find(std::string_view method, std::string_view path,
             std::map<std::string, std::string>* params) const;

  // Every "METHOD pattern", sorted (for logs and docs).
  std::vector<std::string> Routes() const;

 private:
  struct Node;
  std::unique_ptr<Node> root_;
};

// Decodes %XX escapes ('+' is kept); invalid escapes are copied through.
std::string PercentDecode(std::string_view in);

}  // namespace infermesh::http
