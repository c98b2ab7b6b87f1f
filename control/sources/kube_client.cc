#include "control/sources/kube_client.h"

#include <curl/curl.h>
#include <yaml.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "control/json_fields.h"

namespace sluice {
namespace {

using json_fields::AsObject;
using json_fields::GetArray;
using json_fields::GetBool;
using json_fields::GetObject;
using json_fields::GetString;
using json_fields::json;
using json_fields::Loc;
using json_fields::Member;
using json_fields::Need;
using json_fields::Quote;

constexpr size_t kMaxConfigBytes = 4u << 20;
constexpr size_t kMaxErrorBodyBytes = 64u << 10;
constexpr const char* kUserAgent = "sluice-control/0.1";

// ---- files -------------------------------------------------------------------

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, absl::string_view what) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr)
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot open ", what, " ", path));
  std::string text;
  char buffer[16384];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file)) > 0 && text.size() <= kMaxConfigBytes) {
    text.append(buffer, n);
  }
  const bool failed = std::ferror(file) != 0;
  const int error = errno;
  std::fclose(file);
  if (failed) return absl::ErrnoToStatus(error, absl::StrCat("cannot read ", what, " ", path));
  if (text.size() > kMaxConfigBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", path, ": larger than ", kMaxConfigBytes, " bytes"));
  }
  return text;
}

std::string Dirname(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// ---- YAML -> JSON ----------------------------------------------------------------

// kubeconfig files are YAML; libyaml loads the document and this turns its
// nodes into JSON. Plain (unquoted) true/false become booleans, plain null,
// ~ and empty become null, every other scalar a string (a kubeconfig has no
// numbers we read). Aliases are followed, within a node budget, so an alias
// bomb is refused rather than expanded.
class YamlConverter {
 public:
  explicit YamlConverter(yaml_document_t* doc) : doc_(doc) {}

  absl::Status Convert(yaml_node_t* node, int depth, json* out) {
    if (node == nullptr) return absl::InvalidArgumentError("dangling YAML node");
    if (depth > kMaxDepth) return absl::InvalidArgumentError("YAML nested too deep");
    if (++nodes_ > kMaxNodes) return absl::InvalidArgumentError("YAML too large (aliases?)");
    switch (node->type) {
      case YAML_SCALAR_NODE: {
        const std::string value(reinterpret_cast<const char*>(node->data.scalar.value),
                                node->data.scalar.length);
        if (node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
          if (value == "true" || value == "True" || value == "TRUE") {
            *out = true;
            return absl::OkStatus();
          }
          if (value == "false" || value == "False" || value == "FALSE") {
            *out = false;
            return absl::OkStatus();
          }
          if (value.empty() || value == "null" || value == "Null" || value == "NULL" ||
              value == "~") {
            *out = nullptr;
            return absl::OkStatus();
          }
        }
        *out = value;
        return absl::OkStatus();
      }
      case YAML_SEQUENCE_NODE: {
        *out = json::array();
        for (yaml_node_item_t* it = node->data.sequence.items.start;
             it < node->data.sequence.items.top; ++it) {
          json item;
          SLUICE_JSON_RETURN_IF_ERROR(Convert(yaml_document_get_node(doc_, *it), depth + 1, &item));
          out->push_back(std::move(item));
        }
        return absl::OkStatus();
      }
      case YAML_MAPPING_NODE: {
        *out = json::object();
        for (yaml_node_pair_t* pair = node->data.mapping.pairs.start;
             pair < node->data.mapping.pairs.top; ++pair) {
          yaml_node_t* key = yaml_document_get_node(doc_, pair->key);
          if (key == nullptr || key->type != YAML_SCALAR_NODE) {
            return absl::InvalidArgumentError("a YAML mapping key is not a scalar");
          }
          json value;
          SLUICE_JSON_RETURN_IF_ERROR(
              Convert(yaml_document_get_node(doc_, pair->value), depth + 1, &value));
          (*out)[std::string(reinterpret_cast<const char*>(key->data.scalar.value),
                             key->data.scalar.length)] = std::move(value);
        }
        return absl::OkStatus();
      }
      default:
        *out = nullptr;
        return absl::OkStatus();
    }
  }

 private:
  static constexpr int kMaxDepth = 64;
  static constexpr size_t kMaxNodes = 200000;
  yaml_document_t* doc_;
  size_t nodes_ = 0;
};

absl::StatusOr<json> ParseYaml(const std::string& text, const std::string& where) {
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) return absl::InternalError("yaml_parser_initialize failed");
  yaml_parser_set_input_string(&parser, reinterpret_cast<const unsigned char*>(text.data()),
                               text.size());
  yaml_document_t doc;
  if (!yaml_parser_load(&parser, &doc)) {
    absl::Status error = absl::InvalidArgumentError(absl::StrCat(
        where, ": not valid YAML: ", parser.problem != nullptr ? parser.problem : "error",
        " at line ", parser.problem_mark.line + 1, ", column ", parser.problem_mark.column + 1));
    yaml_parser_delete(&parser);
    return error;
  }
  json out;
  absl::Status status;
  yaml_node_t* root = yaml_document_get_root_node(&doc);
  if (root == nullptr) {
    status = absl::InvalidArgumentError(absl::StrCat(where, ": empty"));
  } else {
    YamlConverter converter(&doc);
    status = converter.Convert(root, 0, &out);
    if (!status.ok())
      status = absl::InvalidArgumentError(absl::StrCat(where, ": ", status.message()));
  }
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  if (!status.ok()) return status;
  return out;
}

// ---- kubeconfig --------------------------------------------------------------------

// The entry of a named list (clusters, contexts, users) called `name`, and
// the object under its `field` ("cluster", "context", "user").
absl::Status FindNamed(const json& config, const Loc& loc, absl::string_view list_key,
                       absl::string_view field, const std::string& name, const json** out,
                       Loc* out_loc) {
  const json* list = nullptr;
  SLUICE_JSON_RETURN_IF_ERROR(GetArray(config, loc, list_key, Need::kRequired, &list));
  for (size_t i = 0; i < list->size(); ++i) {
    const Loc entry_loc = loc.Child(list_key).Index(i);
    SLUICE_JSON_RETURN_IF_ERROR(AsObject((*list)[i], entry_loc));
    std::string entry_name;
    SLUICE_JSON_RETURN_IF_ERROR(
        GetString((*list)[i], entry_loc, "name", Need::kRequired, &entry_name));
    if (entry_name != name) continue;
    SLUICE_JSON_RETURN_IF_ERROR(GetObject((*list)[i], entry_loc, field, Need::kRequired, out));
    *out_loc = entry_loc.Child(field);
    return absl::OkStatus();
  }
  return loc.Child(list_key).Error(absl::StrCat("no entry named ", Quote(name)));
}

absl::Status Unsupported(const Loc& loc, absl::string_view what) {
  absl::Status error = loc.Error(absl::StrCat("not supported (", what, ")"));
  return absl::UnimplementedError(error.message());
}

// Reads `key` (a path, relative to `dir`) or `key`-data (base64 PEM).
absl::Status GetPem(const json& obj, const Loc& loc, absl::string_view key, const std::string& dir,
                    std::string* file, std::string* pem) {
  std::string path;
  bool has_path = false;
  SLUICE_JSON_RETURN_IF_ERROR(GetString(obj, loc, key, Need::kOptional, &path, &has_path));
  std::string data;
  bool has_data = false;
  const std::string data_key = absl::StrCat(key, "-data");
  SLUICE_JSON_RETURN_IF_ERROR(GetString(obj, loc, data_key, Need::kOptional, &data, &has_data));
  if (has_data && !data.empty()) {
    if (!absl::Base64Unescape(data, pem) || pem->empty()) {
      return loc.Child(data_key).Error("malformed base64");
    }
    return absl::OkStatus();  // kubectl: the -data field wins
  }
  if (has_path && !path.empty()) *file = path[0] == '/' ? path : absl::StrCat(dir, "/", path);
  return absl::OkStatus();
}

// ---- URLs and HTTP --------------------------------------------------------------

std::string QueryEscape(absl::string_view s) {
  std::string out;
  for (const char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += c;
    } else {
      absl::StrAppend(&out, "%", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
    }
  }
  return out;
}

// The message of a Status body ("services \"x\" is forbidden: ..."), or the
// body itself, cut.
std::string StatusMessage(const std::string& body) {
  json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_object()) {
    if (const json* message = Member(doc, "message"); message != nullptr && message->is_string()) {
      return message->get_ref<const std::string&>();
    }
  }
  return std::string(absl::StripAsciiWhitespace(body.substr(0, 200)));
}

absl::Status HttpError(long status, absl::string_view what, const std::string& body) {
  const std::string message = absl::StrCat(what, ": HTTP ", status, ": ", StatusMessage(body));
  if (status == 401) return absl::UnauthenticatedError(message);
  if (status == 403) return absl::PermissionDeniedError(message);
  if (status >= 500 || status == 429) return absl::UnavailableError(message);
  return absl::FailedPreconditionError(message);
}

std::string Trimmed(std::string s) { return std::string(absl::StripAsciiWhitespace(s)); }

void InitCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

// ---- public: configuration ---------------------------------------------------------

absl::StatusOr<KubeApiConfig> LoadKubeconfig(const std::string& path, const std::string& context) {
  absl::StatusOr<std::string> text = ReadSmallFile(path, "kubeconfig");
  if (!text.ok()) return text.status();
  const std::string where = absl::StrCat("kubeconfig ", path);
  absl::StatusOr<json> config = ParseYaml(*text, where);
  if (!config.ok()) return config.status();
  const Loc loc(where);
  SLUICE_JSON_RETURN_IF_ERROR(AsObject(*config, loc));
  const std::string dir = Dirname(path);

  std::string context_name = context;
  if (context_name.empty()) {
    SLUICE_JSON_RETURN_IF_ERROR(
        GetString(*config, loc, "current-context", Need::kRequired, &context_name));
    if (context_name.empty()) return loc.Child("current-context").Error("must not be empty");
  }
  const json* ctx = nullptr;
  Loc ctx_loc = loc;
  SLUICE_JSON_RETURN_IF_ERROR(
      FindNamed(*config, loc, "contexts", "context", context_name, &ctx, &ctx_loc));
  std::string cluster_name;
  SLUICE_JSON_RETURN_IF_ERROR(GetString(*ctx, ctx_loc, "cluster", Need::kRequired, &cluster_name));
  std::string user_name;
  SLUICE_JSON_RETURN_IF_ERROR(GetString(*ctx, ctx_loc, "user", Need::kOptional, &user_name));

  KubeApiConfig api;
  const json* cluster = nullptr;
  Loc cluster_loc = loc;
  SLUICE_JSON_RETURN_IF_ERROR(
      FindNamed(*config, loc, "clusters", "cluster", cluster_name, &cluster, &cluster_loc));
  SLUICE_JSON_RETURN_IF_ERROR(
      GetString(*cluster, cluster_loc, "server", Need::kRequired, &api.server));
  if (!absl::StartsWith(api.server, "https://") && !absl::StartsWith(api.server, "http://")) {
    return cluster_loc.Child("server").Error(
        absl::StrCat("expected an http:// or https:// URL, got ", Quote(api.server)));
  }
  while (absl::EndsWith(api.server, "/")) api.server.pop_back();
  bool insecure = false;
  SLUICE_JSON_RETURN_IF_ERROR(
      GetBool(*cluster, cluster_loc, "insecure-skip-tls-verify", &insecure));
  if (insecure) {
    return absl::InvalidArgumentError(
        cluster_loc.Child("insecure-skip-tls-verify")
            .Error("true: refused; sluice-control always verifies the API server's certificate "
                   "(give certificate-authority or certificate-authority-data)")
            .message());
  }
  if (Member(*cluster, "tls-server-name") != nullptr) {
    return Unsupported(cluster_loc.Child("tls-server-name"), "SNI override");
  }
  if (Member(*cluster, "proxy-url") != nullptr) {
    return Unsupported(cluster_loc.Child("proxy-url"), "proxies");
  }
  SLUICE_JSON_RETURN_IF_ERROR(
      GetPem(*cluster, cluster_loc, "certificate-authority", dir, &api.ca_file, &api.ca_pem));

  if (!user_name.empty()) {
    const json* user = nullptr;
    Loc user_loc = loc;
    SLUICE_JSON_RETURN_IF_ERROR(
        FindNamed(*config, loc, "users", "user", user_name, &user, &user_loc));
    if (Member(*user, "exec") != nullptr)
      return Unsupported(user_loc.Child("exec"), "exec plugins");
    if (Member(*user, "auth-provider") != nullptr) {
      return Unsupported(user_loc.Child("auth-provider"), "auth provider plugins");
    }
    if (Member(*user, "username") != nullptr || Member(*user, "password") != nullptr) {
      return Unsupported(user_loc.Child("username"), "basic authentication");
    }
    SLUICE_JSON_RETURN_IF_ERROR(GetString(*user, user_loc, "token", Need::kOptional, &api.token));
    std::string token_file;
    SLUICE_JSON_RETURN_IF_ERROR(
        GetString(*user, user_loc, "tokenFile", Need::kOptional, &token_file));
    if (api.token.empty() && !token_file.empty()) {
      api.token_file = token_file[0] == '/' ? token_file : absl::StrCat(dir, "/", token_file);
    }
    SLUICE_JSON_RETURN_IF_ERROR(GetPem(*user, user_loc, "client-certificate", dir,
                                       &api.client_cert_file, &api.client_cert_pem));
    SLUICE_JSON_RETURN_IF_ERROR(
        GetPem(*user, user_loc, "client-key", dir, &api.client_key_file, &api.client_key_pem));
    const bool has_cert = !api.client_cert_file.empty() || !api.client_cert_pem.empty();
    const bool has_key = !api.client_key_file.empty() || !api.client_key_pem.empty();
    if (has_cert != has_key) {
      return user_loc.Child(has_cert ? "client-key" : "client-certificate")
          .Error("missing (a client certificate needs its key)");
    }
  }
  return api;
}

absl::StatusOr<KubeApiConfig> InClusterApiConfig(const std::string& host, const std::string& port,
                                                 const std::string& secrets_dir) {
  if (host.empty() || port.empty()) {
    return absl::FailedPreconditionError(
        "not running in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be "
        "set");
  }
  KubeApiConfig api;
  const bool ipv6 = host.find(':') != std::string::npos;
  api.server = absl::StrCat("https://", ipv6 ? "[" : "", host, ipv6 ? "]" : "", ":", port);
  api.token_file = absl::StrCat(secrets_dir, "/token");
  api.ca_file = absl::StrCat(secrets_dir, "/ca.crt");
  absl::StatusOr<std::string> token = ReadSmallFile(api.token_file, "service account token");
  if (!token.ok()) return token.status();
  if (Trimmed(*token).empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("service account token ", api.token_file, " is empty"));
  }
  absl::StatusOr<std::string> ca = ReadSmallFile(api.ca_file, "service account CA");
  if (!ca.ok()) return ca.status();
  return api;
}

absl::StatusOr<KubeApiConfig> InClusterApiConfigFromEnvironment() {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  return InClusterApiConfig(host != nullptr ? host : "", port != nullptr ? port : "",
                            kServiceAccountDir);
}

double BackoffDelay(int failures, const BackoffOptions& options, double u) {
  if (failures <= 0) return 0;
  double delay = options.initial_seconds;
  for (int i = 1; i < failures && delay < options.max_seconds; ++i) delay *= 2;
  if (delay > options.max_seconds) delay = options.max_seconds;
  return delay * (1 - options.jitter * u);
}

const char* WatchEventTypeName(WatchEventType type) {
  switch (type) {
    case WatchEventType::kAdded:
      return "ADDED";
    case WatchEventType::kModified:
      return "MODIFIED";
    case WatchEventType::kDeleted:
      return "DELETED";
  }
  return "?";
}

// ---- ListWatch ----------------------------------------------------------------------

ListWatch::ListWatch(KubeApiConfig api, std::string path, std::string name,
                     ListWatchOptions options, Handlers handlers)
    : api_(std::move(api)),
      path_(std::move(path)),
      name_(std::move(name)),
      options_(std::move(options)),
      handlers_(std::move(handlers)) {}

ListWatch::~ListWatch() { Stop(); }

absl::Status ListWatch::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (started_) return absl::FailedPreconditionError(absl::StrCat(name_, ": already started"));
  InitCurlOnce();
  multi_ = curl_multi_init();
  if (multi_ == nullptr) return absl::InternalError("curl_multi_init failed");
  started_ = true;
  stop_ = false;
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void ListWatch::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!thread_.joinable()) return;
    stop_ = true;
    stopped_cv_.notify_all();
  }
  // Safe while the thread runs: curl_multi_wakeup may be called from any
  // thread, and multi_ lives until after the join.
  curl_multi_wakeup(static_cast<CURLM*>(multi_));
  thread_.join();
  curl_multi_cleanup(static_cast<CURLM*>(multi_));
  multi_ = nullptr;
}

ListWatchStats ListWatch::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

std::string ListWatch::resource_version() const {
  std::lock_guard<std::mutex> lock(mu_);
  return resource_version_;
}

void ListWatch::Report(absl::Status problem) {
  if (handlers_.on_problem) handlers_.on_problem(problem);
}

bool ListWatch::Sleep(double seconds) {
  std::unique_lock<std::mutex> lock(mu_);
  stopped_cv_.wait_for(lock, std::chrono::duration<double>(seconds),
                       [this] { return stop_.load(); });
  return !stop_;
}

std::string ListWatch::Url(const std::map<std::string, std::string>& query) const {
  std::vector<std::string> parts;
  for (const auto& [key, value] : query)
    parts.push_back(absl::StrCat(key, "=", QueryEscape(value)));
  return absl::StrCat(api_.server, path_, parts.empty() ? "" : "?", absl::StrJoin(parts, "&"));
}

namespace {

struct WriteContext {
  CURL* easy;
  const std::function<bool(long, const char*, size_t)>* on_body;
  bool aborted = false;
};

size_t WriteBody(char* data, size_t size, size_t count, void* user) {
  auto* context = static_cast<WriteContext*>(user);
  long status = 0;
  curl_easy_getinfo(context->easy, CURLINFO_RESPONSE_CODE, &status);
  const size_t n = size * count;
  if (!(*context->on_body)(status, data, n)) {
    context->aborted = true;
    return CURL_WRITEFUNC_ERROR;
  }
  return n;
}

}  // namespace

absl::Status ListWatch::Perform(const std::string& url, bool stream,
                                const std::function<bool(const char*, size_t)>& on_body,
                                long* http_status) {
  *http_status = 0;
  CURL* easy = curl_easy_init();
  if (easy == nullptr) return absl::InternalError("curl_easy_init failed");
  const std::function<bool(long, const char*, size_t)> body = [&](long status, const char* data,
                                                                  size_t n) {
    *http_status = status;
    return on_body(data, n);
  };
  WriteContext context{easy, &body};
  char error[CURL_ERROR_SIZE] = {0};

  std::string token = api_.token;
  if (token.empty() && !api_.token_file.empty()) {
    absl::StatusOr<std::string> text = ReadSmallFile(api_.token_file, "token file");
    if (!text.ok()) {
      curl_easy_cleanup(easy);
      return absl::UnauthenticatedError(absl::StrCat(name_, ": ", text.status().message()));
    }
    token = Trimmed(*text);
  }
  curl_slist* headers = curl_slist_append(nullptr, "Accept: application/json");
  if (!token.empty()) {
    headers = curl_slist_append(headers, absl::StrCat("Authorization: Bearer ", token).c_str());
  }

  curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(easy, CURLOPT_USERAGENT, kUserAgent);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, WriteBody);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &context);
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(options_.connect_timeout_seconds * 1000));
  // A watch ends by the server's timeoutSeconds; the client's own limit
  // only catches a connection that died silently.
  const double timeout =
      stream ? options_.watch_timeout_seconds + 60.0 : options_.list_timeout_seconds;
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout * 1000));
  if (!stream) curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
  // A given CA is the only one trusted (as kubectl): no system path besides.
  if (!api_.ca_pem.empty()) {
    curl_blob blob{const_cast<char*>(api_.ca_pem.data()), api_.ca_pem.size(), CURL_BLOB_COPY};
    curl_easy_setopt(easy, CURLOPT_CAINFO_BLOB, &blob);
    curl_easy_setopt(easy, CURLOPT_CAPATH, nullptr);
  } else if (!api_.ca_file.empty()) {
    curl_easy_setopt(easy, CURLOPT_CAINFO, api_.ca_file.c_str());
    curl_easy_setopt(easy, CURLOPT_CAPATH, nullptr);
  }
  if (!api_.client_cert_pem.empty()) {
    curl_blob blob{const_cast<char*>(api_.client_cert_pem.data()), api_.client_cert_pem.size(),
                   CURL_BLOB_COPY};
    curl_easy_setopt(easy, CURLOPT_SSLCERT_BLOB, &blob);
  } else if (!api_.client_cert_file.empty()) {
    curl_easy_setopt(easy, CURLOPT_SSLCERT, api_.client_cert_file.c_str());
  }
  curl_easy_setopt(easy, CURLOPT_SSLCERTTYPE, "PEM");
  if (!api_.client_key_pem.empty()) {
    curl_blob blob{const_cast<char*>(api_.client_key_pem.data()), api_.client_key_pem.size(),
                   CURL_BLOB_COPY};
    curl_easy_setopt(easy, CURLOPT_SSLKEY_BLOB, &blob);
  } else if (!api_.client_key_file.empty()) {
    curl_easy_setopt(easy, CURLOPT_SSLKEY, api_.client_key_file.c_str());
  }
  curl_easy_setopt(easy, CURLOPT_SSLKEYTYPE, "PEM");

  CURLM* multi = static_cast<CURLM*>(multi_);
  CURLcode result = CURLE_OK;
  bool stopped = false;
  if (curl_multi_add_handle(multi, easy) != CURLM_OK) {
    curl_slist_free_all(headers);
    curl_easy_cleanup(easy);
    return absl::InternalError("curl_multi_add_handle failed");
  }
  for (;;) {
    if (stop_) {
      stopped = true;
      break;
    }
    int running = 0;
    if (curl_multi_perform(multi, &running) != CURLM_OK) {
      result = CURLE_FAILED_INIT;
      break;
    }
    int queued = 0;
    bool done = false;
    while (CURLMsg* msg = curl_multi_info_read(multi, &queued)) {
      if (msg->msg == CURLMSG_DONE && msg->easy_handle == easy) {
        result = msg->data.result;
        done = true;
      }
    }
    if (done || running == 0) break;
    curl_multi_poll(multi, nullptr, 0, 1000, nullptr);
  }
  if (*http_status == 0) curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, http_status);
  curl_multi_remove_handle(multi, easy);
  curl_slist_free_all(headers);
  curl_easy_cleanup(easy);

  if (stopped) return absl::CancelledError("stopped");
  if (context.aborted) return absl::AbortedError("aborted by the reader");
  if (result != CURLE_OK) {
    return absl::UnavailableError(
        absl::StrCat(error[0] != '\0' ? error : curl_easy_strerror(result), " (curl ",
                     static_cast<int>(result), ")"));
  }
  return absl::OkStatus();
}

bool ListWatch::List(std::vector<json>* items, std::string* resource_version, bool* gone) {
  *gone = false;
  items->clear();
  std::string continue_token;
  int restarts = 0;
  for (;;) {
    std::map<std::string, std::string> query{{"limit", absl::StrCat(options_.page_size)}};
    if (!continue_token.empty()) query["continue"] = continue_token;
    if (!options_.label_selector.empty()) query["labelSelector"] = options_.label_selector;
    std::string body;
    bool too_big = false;
    long status = 0;
    const absl::Status sent = Perform(
        Url(query), /*stream=*/false,
        [&](const char* data, size_t n) {
          if (body.size() + n > options_.max_list_page_bytes) {
            too_big = true;
            return false;
          }
          body.append(data, n);
          return true;
        },
        &status);
    if (absl::IsCancelled(sent)) return false;
    const std::string what = absl::StrCat(name_, ": list");
    if (too_big) {
      Report(absl::InvalidArgumentError(
          absl::StrCat(what, ": a page is larger than ", options_.max_list_page_bytes, " bytes")));
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.request_errors;
      return false;
    }
    if (!sent.ok()) {
      Report(absl::Status(sent.code(), absl::StrCat(what, ": ", sent.message())));
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.request_errors;
      return false;
    }
    if (status == 410 && !continue_token.empty() && restarts < 3) {
      // The continue token expired (the snapshot was compacted): start over.
      Report(absl::OutOfRangeError(
          absl::StrCat(what, ": continue token expired (410 Gone); listing again from the start")));
      ++restarts;
      items->clear();
      continue_token.clear();
      *gone = true;
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.relists_gone;
      continue;
    }
    if (status != 200) {
      Report(HttpError(status, what, body));
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.request_errors;
      return false;
    }
    absl::StatusOr<json> page = json_fields::ParseJson(body, Loc(what));
    absl::Status bad = page.status();
    const json* metadata = nullptr;
    const json* page_items = nullptr;
    std::string next;
    if (bad.ok()) bad = AsObject(*page, Loc(what));
    if (bad.ok()) bad = GetObject(*page, Loc(what), "metadata", Need::kRequired, &metadata);
    if (bad.ok()) {
      bad = GetString(*metadata, Loc(what).Child("metadata"), "resourceVersion", Need::kRequired,
                      resource_version);
    }
    if (bad.ok())
      bad = GetString(*metadata, Loc(what).Child("metadata"), "continue", Need::kOptional, &next);
    if (bad.ok()) bad = GetArray(*page, Loc(what), "items", Need::kOptional, &page_items);
    if (!bad.ok()) {
      Report(bad);
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.request_errors;
      return false;
    }
    for (size_t i = 0; page_items != nullptr && i < page_items->size(); ++i) {
      json& item = const_cast<json&>((*page_items)[i]);
      if (!item.is_object()) {
        Report(json_fields::TypeError(Loc(what).Child("items").Index(i), "object", item));
        std::lock_guard<std::mutex> lock(mu_);
        ++stats_.malformed;
        continue;
      }
      items->push_back(std::move(item));
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.list_pages;
    }
    if (next.empty()) return true;
    continue_token = next;
  }
}

void ListWatch::HandleWatchLine(const std::string& raw, bool* gone, bool* failed, bool* delivered) {
  const absl::string_view line = absl::StripAsciiWhitespace(raw);
  if (line.empty()) return;
  const Loc loc(absl::StrCat(name_, ": watch event"));
  const auto malformed = [&](const absl::Status& why) {
    Report(why);
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.malformed;
  };
  absl::StatusOr<json> event = json_fields::ParseJson(line, loc);
  if (!event.ok()) return malformed(event.status());
  if (absl::Status s = AsObject(*event, loc); !s.ok()) return malformed(s);
  std::string type;
  if (absl::Status s = GetString(*event, loc, "type", Need::kRequired, &type); !s.ok()) {
    return malformed(s);
  }
  const json* object = nullptr;
  if (absl::Status s = GetObject(*event, loc, "object", Need::kRequired, &object); !s.ok()) {
    return malformed(s);
  }
  if (type == "ERROR") {
    // object is a Status: {"kind":"Status","code":410,"reason":"Expired",...}
    const json* code = Member(*object, "code");
    const bool is_gone =
        code != nullptr && code->is_number_integer() && code->get<int64_t>() == 410;
    std::string reason, message;
    (void)GetString(*object, loc, "reason", Need::kOptional, &reason);
    (void)GetString(*object, loc, "message", Need::kOptional, &message);
    if (is_gone) {
      *gone = true;
      Report(absl::OutOfRangeError(absl::StrCat(name_, ": watch: resourceVersion ",
                                                resource_version(), " is gone (410 ", reason, ": ",
                                                message, "); relisting")));
    } else {
      *failed = true;
      Report(absl::UnavailableError(absl::StrCat(
          name_, ": watch ERROR event: ",
          code != nullptr ? json_fields::Describe(*code) : "no code", " ", reason, ": ", message)));
    }
    return;
  }
  // The object's name, for messages about it.
  std::string id;
  if (const json* metadata = Member(*object, "metadata");
      metadata != nullptr && metadata->is_object()) {
    std::string ns, name;
    (void)GetString(*metadata, loc, "namespace", Need::kOptional, &ns);
    (void)GetString(*metadata, loc, "name", Need::kOptional, &name);
    id = ns.empty() ? name : absl::StrCat(ns, "/", name);
  }
  const Loc object_loc(
      absl::StrCat(name_, ": watch event ", type, id.empty() ? "" : absl::StrCat(" (", id, ")")));
  const json* metadata = nullptr;
  std::string rv;
  absl::Status s =
      GetObject(*object, object_loc.Child("object"), "metadata", Need::kRequired, &metadata);
  if (s.ok()) {
    s = GetString(*metadata, object_loc.Child("object").Child("metadata"), "resourceVersion",
                  Need::kRequired, &rv);
  }
  if (s.ok() && rv.empty()) {
    s = object_loc.Child("object.metadata.resourceVersion").Error("must not be empty");
  }
  WatchEventType event_type = WatchEventType::kAdded;
  if (s.ok()) {
    if (type == "ADDED") {
      event_type = WatchEventType::kAdded;
    } else if (type == "MODIFIED") {
      event_type = WatchEventType::kModified;
    } else if (type == "DELETED") {
      event_type = WatchEventType::kDeleted;
    } else if (type != "BOOKMARK") {
      s = object_loc.Child("type").Error(
          absl::StrCat("expected ADDED, MODIFIED, DELETED, BOOKMARK or ERROR, got ", Quote(type)));
    }
  }
  if (!s.ok()) return malformed(s);
  {
    std::lock_guard<std::mutex> lock(mu_);
    resource_version_ = rv;
    ++(type == "BOOKMARK" ? stats_.bookmarks : stats_.events);
  }
  if (type == "BOOKMARK") return;
  *delivered = true;
  if (handlers_.on_event) {
    handlers_.on_event(event_type, std::move(const_cast<json&>(*object)), rv);
  }
}

ListWatch::WatchEnd ListWatch::Watch(bool* delivered) {
  *delivered = false;
  std::map<std::string, std::string> query{
      {"watch", "1"},
      {"resourceVersion", resource_version()},
      {"allowWatchBookmarks", "true"},
      {"timeoutSeconds", absl::StrCat(options_.watch_timeout_seconds)},
  };
  if (!options_.label_selector.empty()) query["labelSelector"] = options_.label_selector;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.watches;
  }
  std::string pending;     // a line not yet complete
  std::string error_body;  // the body of a non-200 answer
  bool gone = false, failed = false, too_long = false;
  long status = 0;
  const std::string what = absl::StrCat(name_, ": watch");
  const absl::Status sent = Perform(
      Url(query), /*stream=*/true,
      [&](const char* data, size_t n) {
        // Perform sets `status` before handing over any body.
        if (status != 200) {
          if (error_body.size() < kMaxErrorBodyBytes) error_body.append(data, n);
          return true;
        }
        // Split into lines; hand over complete ones, keep the rest.
        pending.append(data, n);
        size_t start = 0;
        for (size_t newline; (newline = pending.find('\n', start)) != std::string::npos;
             start = newline + 1) {
          HandleWatchLine(pending.substr(start, newline - start), &gone, &failed, delivered);
          if (gone || failed || stop_) {
            pending.clear();
            return false;
          }
        }
        pending.erase(0, start);
        if (pending.size() > options_.max_event_bytes) {
          too_long = true;
          return false;
        }
        return true;
      },
      &status);
  if (absl::IsCancelled(sent) || stop_) return WatchEnd::kStopped;
  if (gone) return WatchEnd::kGone;
  if (status == 410) {
    Report(absl::OutOfRangeError(absl::StrCat(what, ": resourceVersion ", resource_version(),
                                              " is gone (HTTP 410); relisting")));
    return WatchEnd::kGone;
  }
  if (status != 0 && status != 200) {
    Report(HttpError(status, what, error_body));
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.request_errors;
    return WatchEnd::kFailed;
  }
  if (too_long) {
    Report(absl::InvalidArgumentError(
        absl::StrCat(what, ": an event is longer than ", options_.max_event_bytes, " bytes")));
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.malformed;
    return WatchEnd::kFailed;
  }
  if (failed) return WatchEnd::kFailed;
  if (!sent.ok()) {
    Report(absl::UnavailableError(absl::StrCat(what, ": stream dropped: ", sent.message())));
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.stream_drops;
    if (status == 0) ++stats_.request_errors;
    return WatchEnd::kFailed;
  }
  if (!absl::StripAsciiWhitespace(pending).empty()) {
    // The stream ended inside an event: nothing of it is applied.
    Report(absl::InvalidArgumentError(
        absl::StrCat(what, ": the stream ended inside an event (", pending.size(), " bytes)")));
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.malformed;
  }
  return WatchEnd::kClean;
}

void ListWatch::Run() {
  std::mt19937_64 random(std::random_device{}());
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  int failures = 0;
  bool need_list = true;
  const auto back_off = [&] {
    return Sleep(BackoffDelay(failures, options_.backoff, unit(random)));
  };
  while (!stop_) {
    if (need_list) {
      std::vector<json> items;
      std::string rv;
      bool gone = false;
      if (!List(&items, &rv, &gone)) {
        if (stop_) return;
        ++failures;
        if (!back_off()) return;
        continue;
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        resource_version_ = rv;
        ++stats_.lists;
      }
      if (handlers_.on_snapshot) handlers_.on_snapshot(std::move(items), rv);
      need_list = false;
    }
    bool delivered = false;
    const auto begin = std::chrono::steady_clock::now();
    const WatchEnd end = Watch(&delivered);
    const double lasted =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
    if (delivered) failures = 0;
    switch (end) {
      case WatchEnd::kStopped:
        return;
      case WatchEnd::kClean:
        // A server that ends streams at once would make this a busy loop.
        if (!delivered && lasted < 1.0) {
          ++failures;
          if (!back_off()) return;
        }
        break;
      case WatchEnd::kGone: {
        std::lock_guard<std::mutex> lock(mu_);
        ++stats_.relists_gone;
      }
        need_list = true;
        if (!delivered) {
          ++failures;
          if (!back_off()) return;
        }
        break;
      case WatchEnd::kFailed:
        ++failures;
        if (!back_off()) return;
        break;
    }
  }
}

}  // namespace sluice
