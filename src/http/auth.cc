#include "http/auth.h"

#include <cctype>

namespace infermesh::http {

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  // Compare over the longer length so a prefix match costs the same as any other.
  const size_t n = std::max(a.size(), b.size());
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

BearerAuth::BearerAuth(std::vector<std::string> keys) {
  for (auto& k : keys) {
    if (!k.empty()) keys_.push_back(std::move(k));
  }
}

std::string_view BearerAuth::Token(const Request& req) {
  std::string_view h = req.Header("authorization");
  constexpr std::string_view kScheme = "bearer ";
  if (h.size() <= kScheme.size()) return {};
  for (size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(h[i])) != kScheme[i]) return {};
  }
  h.remove_prefix(kScheme.size());
  while (!h.empty() && h.front() == ' ') h.remove_prefix(1);
  while (!h.empty() && h.back() == ' ') h.remove_suffix(1);
  return h;
}

AuthResult BearerAuth::Check(const Request& req) const {
  if (keys_.empty()) return AuthResult::kOk;
  const std::string_view token = Token(req);
  if (token.empty()) return AuthResult::kMissing;
  bool ok = false;
  for (const auto& k : keys_) ok |= ConstantTimeEquals(token, k);  // no early exit
  return ok ? AuthResult::kOk : AuthResult::kDenied;
}

std::vector<std::string> SplitKeyList(std::string_view list) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t comma = list.find(',', pos);
    if (comma == std::string_view::npos) comma = list.size();
    std::string_view item = list.substr(pos, comma - pos);
    while (!item.empty() && std::isspace(static_cast<unsigned char>(item.front()))) {
      item.remove_prefix(1);
    }
    while (!item.empty() && std::isspace(static_cast<unsigned char>(item.back()))) {
      item.remove_suffix(1);
    }
    if (!item.empty()) out.emplace_back(item);
    pos = comma + 1;
  }
  return out;
}

AuthResult CheckRoleKeys(const Request& req, const BearerAuth& user, const BearerAuth& admin,
                         bool admin_route) {
  if (!user.enabled() && !admin.enabled()) return AuthResult::kOk;
  AuthResult res = AuthResult::kDenied;
  if (admin.enabled()) res = admin.Check(req);
  if (!admin_route && res != AuthResult::kOk && user.enabled()) res = user.Check(req);
  return res;
}

}  // namespace infermesh::http
