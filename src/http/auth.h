// Bearer API keys: `Authorization: Bearer <key>` checked against configured keys in
// constant time (the time does not depend on where a wrong key first differs, nor on
// which configured key matches).
//
//   BearerAuth auth({"key-a", "key-b"});
//   switch (auth.Check(req)) { case AuthResult::kOk: ...; case kMissing: 401; case kDenied: 403; }
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "http/message.h"

namespace infermesh::http {

enum class AuthResult {
  kOk,       // a configured key, or no keys configured (open)
  kMissing,  // no Authorization: Bearer header: 401
  kDenied,   // a key that is not one of these: 403
};

// Equal length and bytes, in time that depends only on the lengths.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

class BearerAuth {
 public:
  BearerAuth() = default;
  explicit BearerAuth(std::vector<std::string> keys);
  bool enabled() const { return !keys_.empty(); }
  AuthResult Check(const Request& req) const;
  // The token of an `Authorization: Bearer <token>` header ("" when absent or malformed).
  static std::string_view Token(const Request& req);

 private:
  std::vector<std::string> keys_;
};

// Two roles, as the gateway and the job service use them: `user` keys open the ordinary
// routes, the `admin` key opens every route. With no key of either kind configured every
// route is open; once any is, an admin route needs the admin key.
AuthResult CheckRoleKeys(const Request& req, const BearerAuth& user, const BearerAuth& admin,
                         bool admin_route);

// "a,b , c" -> {"a", "b", "c"}: the comma-separated key lists of the configuration.
std::vector<std::string> SplitKeyList(std::string_view list);

}  // namespace infermesh::http
