#include "http/router.h"

#include <algorithm>
#include <utility>

namespace infermesh::http {
namespace {

// Splits "/a/b" into {"a", "b"}; "/" into {""}. Works on views, no allocation
// beyond the small vector the caller reuses.
void SplitPath(std::string_view path, std::vector<std::string_view>* out) {
  out->clear();
  if (!path.empty() && path.front() == '/') path.remove_prefix(1);
  for (;;) {
    size_t slash = path.find('/');
    out->push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
}

bool IsParam(std::string_view segment) {
  return segment.size() >= 2 && segment.front() == '{' && segment.back() == '}';
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

struct Router::Node {
  std::vector<std::pair<std::string, std::unique_ptr<Node>>> exact;  // few children: linear
  std::unique_ptr<Node> param;
  // Set on nodes where a pattern ends.
  std::vector<std::pair<std::string, Handler>> methods;
  std::string pattern;
  std::vector<std::string> param_names;  // in segment order

  const Handler* HandlerFor(std::string_view method) const {
    for (const auto& [m, h] : methods) {
      if (m == method) return &h;
    }
    return nullptr;
  }
};

Router::Router() : root_(std::make_unique<Node>()) {}
Router::~Router() = default;

void Router::Add(std::string method, std::string pattern, Handler handler) {
  std::vector<std::string_view> segments;
  SplitPath(pattern, &segments);
  Node* node = root_.get();
  std::vector<std::string> names;
  for (std::string_view segment : segments) {
    if (IsParam(segment)) {
      names.emplace_back(segment.substr(1, segment.size() - 2));
      if (!node->param) node->param = std::make_unique<Node>();
      node = node->param.get();
      continue;
    }
    auto it = std::find_if(node->exact.begin(), node->exact.end(),
                           [&](const auto& child) { return child.first == segment; });
    if (it == node->exact.end()) {
      node->exact.emplace_back(std::string(segment), std::make_unique<Node>());
      it = std::prev(node->exact.end());
    }
    node = it->second.get();
  }
  node->pattern = pattern;
  node->param_names = std::move(names);
  for (auto& [m, h] : node->methods) {
    if (m == method) {
      h = std::move(handler);
      return;
    }
  }
  node->methods.emplace_back(std::move(method), std::move(handler));
}

namespace {

// Depth-first search with backtracking: exact child before the parameter child.
// `method` empty means "any method" (used to tell 405 from 404).
template <typename NodeT>
const NodeT* Search(const NodeT* node, const std::vector<std::string_view>& segments, size_t i,
                    std::string_view method, std::vector<std::string_view>* captures) {
  if (i == segments.size()) {
    if (node->methods.empty()) return nullptr;
    if (!method.empty() && node->HandlerFor(method) == nullptr) return nullptr;
    return node;
  }
  std::string_view segment = segments[i];
  for (const auto& [name, child] : node->exact) {
    if (name == segment) {
      if (const NodeT* found = Search(child.get(), segments, i + 1, method, captures)) {
        return found;
      }
      break;
    }
  }
  if (node->param && !segment.empty()) {
    captures->push_back(segment);
    if (const NodeT* found = Search(node->param.get(), segments, i + 1, method, captures)) {
      return found;
    }
    captures->pop_back();
  }
  return nullptr;
}

}  // namespace

Router::Match Router::Find(std::string_view method, std::string_view path,
                           std::map<std::string, std::string>* params) const {
  thread_local std::vector<std::string_view> segments;
  thread_local std::vector<std::string_view> captures;
  if (params) params->clear();
  SplitPath(path, &segments);
  captures.clear();
  Match match;
  const Node* node = method.empty() ? nullptr : Search(root_.get(), segments, 0, method, &captures);
  if (node != nullptr) {
    match.handler = node->HandlerFor(method);
    match.route = &node->pattern;
    match.status = 200;
    if (params) {
      for (size_t k = 0; k < captures.size() && k < node->param_names.size(); ++k) {
        params->emplace(node->param_names[k], PercentDecode(captures[k]));
      }
    }
    return match;
  }
  captures.clear();
  node = Search(root_.get(), segments, 0, std::string_view(), &captures);
  if (node == nullptr) return match;  // 404
  match.status = 405;
  std::vector<std::string_view> allowed;
  for (const auto& entry : node->methods) allowed.push_back(entry.first);
  std::sort(allowed.begin(), allowed.end());
  for (std::string_view m : allowed) {
    if (!match.allow.empty()) match.allow += ", ";
    match.allow += m;
  }
  return match;
}

std::vector<std::string> Router::Routes() const {
  std::vector<std::string> out;
  std::vector<const Node*> stack{root_.get()};
  while (!stack.empty()) {
    const Node* node = stack.back();
    stack.pop_back();
    for (const auto& [method, handler] : node->methods) out.push_back(method + " " + node->pattern);
    for (const auto& [name, child] : node->exact) stack.push_back(child.get());
    if (node->param) stack.push_back(node->param.get());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string PercentDecode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size()) {
      int hi = HexValue(in[i + 1]);
      int lo = HexValue(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(in[i]);
  }
  return out;
}

}  // namespace infermesh::http
