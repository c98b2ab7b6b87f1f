#include "control/sources/etcd_source.h"

#include <curl/curl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "control/sources/etcd_gateway.h"
#include "control/sources/json_stream.h"

namespace sluice {
namespace {

constexpr size_t kMaxRangeAnswerBytes = size_t{256} << 20;
constexpr size_t kMaxWatchObjectBytes = size_t{64} << 20;
constexpr size_t kMaxErrorBodyBytes = 4096;
// Longest a wait on the multi handle lasts before the stop flag is looked
// at again; Stop() also wakes it at once.
constexpr int kPollMs = 1000;

std::once_flag curl_init_once;
CURLcode curl_init_result = CURLE_OK;

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// ca_file, cert_file and key_file: paired, for https:// only, readable now.
absl::Status CheckTlsFiles(const EtcdSourceOptions& options) {
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError(
        options.cert_file.empty()
            ? "etcd key_file is set without cert_file (a client key needs its certificate)"
            : "etcd cert_file is set without key_file (a client certificate needs its key)");
  }
  const std::pair<const char*, const std::string*> files[] = {
      {"ca_file", &options.ca_file},
      {"cert_file", &options.cert_file},
      {"key_file", &options.key_file},
  };
  for (const auto& [name, path] : files) {
    if (path->empty()) continue;
    if (!absl::StartsWith(options.endpoint, "https://")) {
      return absl::InvalidArgumentError(absl::StrCat("etcd ", name, " is set but endpoint ",
                                                     options.endpoint,
                                                     " is not https://: it would not be used"));
    }
    if (access(path->c_str(), R_OK) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("etcd ", name, " ", *path, ": cannot read: ", std::strerror(errno)));
    }
  }
  return absl::OkStatus();
}

// The headers of every request; with a token, its "Authorization" too.
curl_slist* MakeHeaders(const std::string& token) {
  std::vector<std::string> lines = {"Content-Type: application/json", "Expect:"};
  if (!token.empty()) lines.push_back(absl::StrCat("Authorization: ", token));
  curl_slist* list = nullptr;
  for (const std::string& line : lines) {
    curl_slist* more = curl_slist_append(list, line.c_str());
    if (more == nullptr) {
      curl_slist_free_all(list);
      return nullptr;
    }
    list = more;
  }
  return list;
}

// What etcd says when a request needs a user and came without a token or
// with one it no longer knows (a watch says it in its cancel_reason).
bool SaysUnauthenticated(absl::string_view text) {
  return absl::StrContains(text, "code = Unauthenticated") ||
         absl::StrContains(text, "invalid auth token") ||
         absl::StrContains(text, "user name is empty");
}

}  // namespace

struct EtcdSource::Loop {
  EtcdSourceOptions options;
  EventCallback on_event;
  ProblemCallback on_problem;
  Counters* counters = nullptr;
  std::atomic<bool>* stopping = nullptr;

  FlannelKeyspace keyspace;
  std::string range_end;
  int64_t revision = 0;  // every change up to here has been delivered
  std::mt19937_64 rng;

  CURLM* multi = nullptr;
  CURL* range_easy = nullptr;
  CURL* watch_easy = nullptr;
  curl_slist* headers = nullptr;       // without a token: for authenticating
  curl_slist* auth_headers = nullptr;  // with the current token; null without one
  std::string token;                   // from the last authentication; empty without a user
  char error_text[CURL_ERROR_SIZE] = {};

  // One transfer's answer.
  std::string answer;  // range: the body; watch: the body of a non-200 answer
  bool answer_too_big = false;
  // The watch stream being read.
  JsonObjectSplitter splitter{kMaxWatchObjectBytes};
  bool watch_checked_status = false;
  bool watch_ok_status = false;
  bool watch_created = false;
  bool watch_relist = false;  // the stream asks for a fresh listing
  absl::Status watch_error;   // why the stream was abandoned
  bool delivered_since_list = false;

  explicit Loop(EtcdSourceOptions opts) : options(std::move(opts)), keyspace(options.prefix) {
    range_end = PrefixRangeEnd(keyspace.range_key());
  }

  ~Loop() {
    if (range_easy != nullptr) curl_easy_cleanup(range_easy);
    if (watch_easy != nullptr) curl_easy_cleanup(watch_easy);
    if (multi != nullptr) curl_multi_cleanup(multi);
    if (headers != nullptr) curl_slist_free_all(headers);
    if (auth_headers != nullptr) curl_slist_free_all(auth_headers);
  }

  absl::Status Init() {
    multi = curl_multi_init();
    range_easy = curl_easy_init();
    watch_easy = curl_easy_init();
    headers = MakeHeaders("");
    if (multi == nullptr || range_easy == nullptr || watch_easy == nullptr || headers == nullptr) {
      return absl::InternalError("libcurl: cannot create handles");
    }
    const uint64_t seed = options.jitter_seed != 0
                              ? options.jitter_seed
                              : static_cast<uint64_t>(Clock::now().time_since_epoch().count());
    rng.seed(seed);
    return absl::OkStatus();
  }

  bool Stopping() const { return stopping->load(std::memory_order_acquire); }

  void Report(const absl::Status& status) {
    if (status.code() == absl::StatusCode::kInvalidArgument) {
      counters->bad_values.fetch_add(1, std::memory_order_relaxed);
    }
    if (on_problem) on_problem(status);
  }

  void Deliver(std::vector<FlannelEvent>* events, std::vector<absl::Status>* problems) {
    for (const absl::Status& problem : *problems) Report(problem);
    for (const FlannelEvent& event : *events) {
      counters->events.fetch_add(1, std::memory_order_relaxed);
      delivered_since_list = true;
      if (on_event) on_event(event);
    }
    events->clear();
    problems->clear();
  }

  void SetRevision(int64_t r) {
    revision = r;
    counters->revision.store(r, std::memory_order_relaxed);
  }

  // Waits `d`, or less when Stop() is called.
  void Sleep(milliseconds d) {
    const Clock::time_point deadline = Clock::now() + d;
    while (!Stopping()) {
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return;
      curl_multi_poll(multi, nullptr, 0, static_cast<int>(std::min<int64_t>(left.count(), kPollMs)),
                      nullptr);
    }
  }

  milliseconds Jittered(milliseconds backoff) {
    const int64_t high = std::max<int64_t>(backoff.count(), 1);
    std::uniform_int_distribution<int64_t> pick(high / 2, high);
    return milliseconds(pick(rng));
  }

  // Runs `easy` on the multi handle until it completes; CURLE_ABORTED_BY_CALLBACK
  // when Stop() came first.
  CURLcode Perform(CURL* easy) {
    if (curl_multi_add_handle(multi, easy) != CURLM_OK) return CURLE_FAILED_INIT;
    CURLcode result = CURLE_ABORTED_BY_CALLBACK;
    while (!Stopping()) {
      int running = 0;
      if (curl_multi_perform(multi, &running) != CURLM_OK) {
        result = CURLE_FAILED_INIT;
        break;
      }
      bool done = false;
      int left = 0;
      while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
        if (msg->msg == CURLMSG_DONE && msg->easy_handle == easy) {
          result = msg->data.result;
          done = true;
        }
      }
      if (done) break;
      curl_multi_poll(multi, nullptr, 0, kPollMs, nullptr);
    }
    curl_multi_remove_handle(multi, easy);
    return result;
  }

  void SetCommon(CURL* easy, const char* path, const std::string& body, bool with_token = true) {
    curl_easy_reset(easy);
    const std::string url = absl::StrCat(options.endpoint, path);
    curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER,
                     with_token && auth_headers != nullptr ? auth_headers : headers);
    curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, body.c_str());
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(options.connect_timeout.count()));
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, error_text);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, this);
    // TLS: verification as libcurl's defaults have it, said out loud; a
    // given CA is the only one trusted (no system path besides).
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
    if (!options.ca_file.empty()) {
      curl_easy_setopt(easy, CURLOPT_CAINFO, options.ca_file.c_str());
      curl_easy_setopt(easy, CURLOPT_CAPATH, nullptr);
    }
    if (!options.cert_file.empty()) {
      curl_easy_setopt(easy, CURLOPT_SSLCERT, options.cert_file.c_str());
      curl_easy_setopt(easy, CURLOPT_SSLCERTTYPE, "PEM");
      curl_easy_setopt(easy, CURLOPT_SSLKEY, options.key_file.c_str());
      curl_easy_setopt(easy, CURLOPT_SSLKEYTYPE, "PEM");
    }
    error_text[0] = '\0';
    answer.clear();
    answer_too_big = false;
  }

  absl::Status TransferError(const char* what, CURLcode code) {
    const char* detail = error_text[0] != '\0' ? error_text : curl_easy_strerror(code);
    const std::string message = absl::StrCat("etcd ", options.endpoint, ": ", what, ": ", detail);
    if (code == CURLE_OPERATION_TIMEDOUT) return absl::DeadlineExceededError(message);
    return absl::UnavailableError(message);
  }

  static size_t CollectAnswer(char* data, size_t size, size_t n, void* user) {
    Loop* loop = static_cast<Loop*>(user);
    const size_t bytes = size * n;
    if (loop->answer.size() + bytes > kMaxRangeAnswerBytes) {
      loop->answer_too_big = true;
      return 0;
    }
    loop->answer.append(data, bytes);
    return bytes;
  }

  // One range request; the answer's text in `answer`.
  absl::StatusOr<EtcdRangeResponse> RangePage(const std::string& key, int64_t at_revision) {
    SetCommon(range_easy, "/v3/kv/range",
              RangeRequestBody(key, range_end, at_revision, options.page_size));
    curl_easy_setopt(range_easy, CURLOPT_WRITEFUNCTION, &Loop::CollectAnswer);
    curl_easy_setopt(range_easy, CURLOPT_TIMEOUT_MS,
                     static_cast<long>(options.request_timeout.count()));
    const CURLcode code = Perform(range_easy);
    if (Stopping()) return absl::CancelledError("stopping");
    if (answer_too_big) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "etcd ", options.endpoint, ": range answer over ", kMaxRangeAnswerBytes, " bytes"));
    }
    if (code != CURLE_OK) return TransferError("range", code);
    long http = 0;
    curl_easy_getinfo(range_easy, CURLINFO_RESPONSE_CODE, &http);
    if (http != 200) {
      const absl::Status refused = GatewayError(http, answer);
      // etcd's "user name is empty" (code 3) is no bad value: auth is on and
      // no username was given.
      if (SaysUnauthenticated(refused.message())) {
        return absl::UnauthenticatedError(absl::StrCat(
            "etcd ", options.endpoint, ": ", absl::StripPrefix(refused.message(), "etcd: "),
            options.username.empty() ? ": etcd wants a user (username)" : ""));
      }
      return refused;
    }
    return ParseRangeResponse(answer);
  }

  // POST /v3/auth/authenticate as options.username; the token in `token` and
  // `auth_headers`. Messages name the user, never the password.
  absl::Status Authenticate() {
    SetCommon(range_easy, "/v3/auth/authenticate",
              AuthenticateRequestBody(options.username, options.password),
              /*with_token=*/false);
    curl_easy_setopt(range_easy, CURLOPT_WRITEFUNCTION, &Loop::CollectAnswer);
    curl_easy_setopt(range_easy, CURLOPT_TIMEOUT_MS,
                     static_cast<long>(options.request_timeout.count()));
    const CURLcode code = Perform(range_easy);
    if (Stopping()) return absl::CancelledError("stopping");
    const std::string as_user = absl::StrCat("etcd ", options.endpoint,
                                             ": authenticating as user \"", options.username, "\"");
    if (answer_too_big) {
      return absl::ResourceExhaustedError(
          absl::StrCat(as_user, ": answer over ", kMaxRangeAnswerBytes, " bytes"));
    }
    if (code != CURLE_OK) {
      const absl::Status failed = TransferError("authenticate", code);
      return absl::Status(failed.code(),
                          absl::StrCat(failed.message(), " (as user \"", options.username, "\")"));
    }
    long http = 0;
    curl_easy_getinfo(range_easy, CURLINFO_RESPONSE_CODE, &http);
    SetToken("");
    if (http != 200) {
      const absl::Status refused = GatewayError(http, answer);
      // A user for an etcd with auth off is no error: requests then go
      // without a token (etcd would ignore one anyway).
      if (refused.code() == absl::StatusCode::kFailedPrecondition &&
          absl::StrContains(refused.message(), "authentication is not enabled")) {
        return absl::OkStatus();
      }
      // A wrong name or password is etcd's code 3 (InvalidArgument, which
      // on_problem's callers read as a bad value): said as Unauthenticated.
      const absl::StatusCode status_code = refused.code() == absl::StatusCode::kInvalidArgument
                                               ? absl::StatusCode::kUnauthenticated
                                               : refused.code();
      return absl::Status(
          status_code, absl::StrCat(as_user, ": ", absl::StripPrefix(refused.message(), "etcd: ")));
    }
    absl::StatusOr<std::string> issued = ParseAuthenticateResponse(answer);
    if (!issued.ok()) {
      return absl::UnavailableError(absl::StrCat(as_user, ": ", issued.status().message()));
    }
    if (!SetToken(*issued)) return absl::InternalError("libcurl: cannot create handles");
    counters->authentications.fetch_add(1, std::memory_order_relaxed);
    return absl::OkStatus();
  }

  bool SetToken(const std::string& t) {
    token = t;
    if (auth_headers != nullptr) curl_slist_free_all(auth_headers);
    auth_headers = nullptr;
    if (token.empty()) return true;
    auth_headers = MakeHeaders(token);
    return auth_headers != nullptr;
  }

  // A complete listing, delivered as a snapshot.
  absl::Status List() {
    std::vector<EtcdKv> kvs;
    int64_t at_revision = 0;
    std::string key = keyspace.range_key();
    for (;;) {
      absl::StatusOr<EtcdRangeResponse> page = RangePage(key, at_revision);
      if (!page.ok()) return page.status();
      if (at_revision == 0) at_revision = page->revision;
      const bool more = page->more && !page->kvs.empty();
      if (more) key = page->kvs.back().key + '\0';
      for (EtcdKv& kv : page->kvs) kvs.push_back(std::move(kv));
      if (!more) break;
    }
    std::vector<FlannelEvent> events;
    std::vector<absl::Status> problems;
    keyspace.Relist(at_revision, kvs, &events, &problems);
    SetRevision(at_revision);
    counters->lists.fetch_add(1, std::memory_order_relaxed);
    Deliver(&events, &problems);
    delivered_since_list = false;  // counts watched changes only
    return absl::OkStatus();
  }

  // Handles one object of the watch stream; false to abandon the stream.
  bool OnWatchObject(const std::string& text) {
    absl::StatusOr<EtcdWatchResponse> response = ParseWatchResponse(text);
    if (!response.ok()) {
      watch_error = response.status();
      return false;
    }
    if (response->canceled) {
      // A token etcd does not know (it restarted, the token expired): no
      // relist, the retry authenticates again and watches from the same
      // revision.
      if (response->compact_revision == 0 && SaysUnauthenticated(response->cancel_reason)) {
        watch_error = absl::UnauthenticatedError(
            absl::StrCat("etcd ", options.endpoint, ": watch refused (", response->cancel_reason,
                         options.username.empty() ? "): etcd wants a user (username)" : ")"));
        return false;
      }
      if (response->compact_revision == 0 &&
          absl::StrContains(response->cancel_reason, "code = PermissionDenied")) {
        watch_error = absl::PermissionDeniedError(
            absl::StrCat("etcd ", options.endpoint, ": watch refused (", response->cancel_reason,
                         ") for user \"", options.username, "\""));
        return false;
      }
      watch_relist = true;
      if (response->compact_revision != 0) {
        counters->compactions.fetch_add(1, std::memory_order_relaxed);
        watch_error = absl::OutOfRangeError(absl::StrCat(
            "etcd ", options.endpoint, ": watch from revision ", revision + 1,
            " canceled: compacted up to revision ", response->compact_revision, "; relisting"));
      } else {
        watch_error = absl::UnavailableError(absl::StrCat(
            "etcd ", options.endpoint, ": watch canceled (",
            response->cancel_reason.empty() ? "no reason given" : response->cancel_reason,
            "); relisting"));
      }
      return false;
    }
    if (response->created) {
      if (response->revision < revision) {
        watch_relist = true;
        watch_error =
            absl::DataLossError(absl::StrCat("etcd ", options.endpoint, ": store revision ",
                                             response->revision, " is behind revision ", revision,
                                             " already seen (restored from a backup?); relisting"));
        return false;
      }
      watch_created = true;
      counters->watches.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    if (response->IsProgressNotify()) {
      if (response->revision > revision) SetRevision(response->revision);
      return true;
    }
    std::vector<FlannelEvent> events;
    std::vector<absl::Status> problems;
    for (const EtcdWatchEvent& change : response->events) {
      keyspace.Apply(change, &events, &problems);
      if (change.kv.mod_revision > revision) SetRevision(change.kv.mod_revision);
      Deliver(&events, &problems);
      if (Stopping()) return false;
    }
    return true;
  }

  static size_t ReadWatch(char* data, size_t size, size_t n, void* user) {
    Loop* loop = static_cast<Loop*>(user);
    const size_t bytes = size * n;
    if (!loop->watch_checked_status) {
      long http = 0;
      curl_easy_getinfo(loop->watch_easy, CURLINFO_RESPONSE_CODE, &http);
      loop->watch_checked_status = true;
      loop->watch_ok_status = http == 200;
    }
    if (!loop->watch_ok_status) {
      const size_t room = kMaxErrorBodyBytes - std::min(kMaxErrorBodyBytes, loop->answer.size());
      loop->answer.append(data, std::min(room, bytes));
      return bytes;
    }
    std::vector<std::string> objects;
    const absl::Status status = loop->splitter.Feed(std::string_view(data, bytes), &objects);
    for (const std::string& object : objects) {
      if (!loop->OnWatchObject(object)) return 0;  // abandons the transfer
    }
    if (!status.ok()) {
      loop->watch_error = absl::UnavailableError(
          absl::StrCat("etcd ", loop->options.endpoint, ": watch stream: ", status.message()));
      return 0;
    }
    return bytes;
  }

  enum class WatchEnd { kStopped, kBroken, kRelist };

  // Watches from revision + 1 until the stream ends, fails or asks for a
  // relist; the reason is in watch_error.
  WatchEnd Watch() {
    SetCommon(watch_easy, "/v3/watch",
              WatchRequestBody(keyspace.range_key(), range_end, revision + 1,
                               /*progress_notify=*/true));
    curl_easy_setopt(watch_easy, CURLOPT_WRITEFUNCTION, &Loop::ReadWatch);
    // A quiet stream is normal; a peer that vanished is found by keepalives.
    curl_easy_setopt(watch_easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(watch_easy, CURLOPT_TCP_KEEPIDLE, 10L);
    curl_easy_setopt(watch_easy, CURLOPT_TCP_KEEPINTVL, 5L);
    splitter.Reset();
    watch_checked_status = false;
    watch_ok_status = false;
    watch_created = false;
    watch_relist = false;
    watch_error = absl::OkStatus();

    const CURLcode code = Perform(watch_easy);
    if (Stopping()) return WatchEnd::kStopped;
    if (watch_relist) return WatchEnd::kRelist;
    if (watch_error.ok()) {
      long http = 0;
      curl_easy_getinfo(watch_easy, CURLINFO_RESPONSE_CODE, &http);
      if (code == CURLE_OK && http != 200 && http != 0) {
        watch_error = GatewayError(http, answer);
      } else if (code == CURLE_OK) {
        watch_error =
            absl::UnavailableError(absl::StrCat("etcd ", options.endpoint, ": watch stream ended"));
      } else {
        watch_error = TransferError("watch", code);
      }
    }
    return WatchEnd::kBroken;
  }

  void Run() {
    milliseconds backoff = options.backoff_initial;
    const auto retry_later = [&](const absl::Status& why) {
      const milliseconds wait = Jittered(backoff);
      Report(absl::Status(why.code(),
                          absl::StrCat(why.message(), "; retrying in ", wait.count(), " ms")));
      Sleep(wait);
      backoff = std::min(backoff * 2, options.backoff_max);
    };
    const bool with_user = !options.username.empty();
    bool need_auth = with_user;
    bool need_list = true;
    int relists_in_a_row = 0;
    while (!Stopping()) {
      if (need_auth) {
        const absl::Status authed = Authenticate();
        if (Stopping()) break;
        if (!authed.ok()) {
          counters->failures.fetch_add(1, std::memory_order_relaxed);
          retry_later(authed);
          continue;
        }
        need_auth = false;
      }
      if (need_list) {
        const absl::Status listed = List();
        if (Stopping()) break;
        if (!listed.ok()) {
          counters->failures.fetch_add(1, std::memory_order_relaxed);
          need_auth = with_user;  // the token may be what failed
          retry_later(listed);
          continue;
        }
        need_list = false;
      }
      const WatchEnd end = Watch();
      if (end == WatchEnd::kStopped) break;
      if (watch_created) backoff = options.backoff_initial;
      if (end == WatchEnd::kRelist) {
        need_list = true;
        // A watch canceled again right after a relist, with nothing learnt in
        // between, waits like a failure instead of spinning.
        relists_in_a_row = delivered_since_list ? 1 : relists_in_a_row + 1;
        if (relists_in_a_row > 1) {
          retry_later(watch_error);
        } else {
          Report(watch_error);
        }
        continue;
      }
      relists_in_a_row = 0;
      need_auth = with_user;  // a reconnect, or a token etcd no longer knows
      if (watch_created) {
        counters->watch_breaks.fetch_add(1, std::memory_order_relaxed);
      } else {
        counters->failures.fetch_add(1, std::memory_order_relaxed);
      }
      retry_later(watch_error);
    }
  }
};

absl::StatusOr<std::unique_ptr<EtcdSource>> EtcdSource::Start(EtcdSourceOptions options,
                                                              EventCallback on_event,
                                                              ProblemCallback on_problem) {
  if (!absl::StartsWith(options.endpoint, "http://") &&
      !absl::StartsWith(options.endpoint, "https://")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "etcd endpoint must start with http:// or https://, got \"", options.endpoint, "\""));
  }
  while (!options.endpoint.empty() && options.endpoint.back() == '/') options.endpoint.pop_back();
  std::string_view prefix = options.prefix;
  while (!prefix.empty() && prefix.back() == '/') prefix.remove_suffix(1);
  if (prefix.empty()) return absl::InvalidArgumentError("etcd prefix must not be empty");
  if (options.backoff_initial.count() <= 0 || options.backoff_initial > options.backoff_max) {
    return absl::InvalidArgumentError(
        "etcd backoff: backoff_initial must be positive and at most backoff_max");
  }
  if (options.page_size < 1) return absl::InvalidArgumentError("etcd page_size must be >= 1");
  if (absl::Status tls = CheckTlsFiles(options); !tls.ok()) return tls;
  if (!options.password.empty() && options.username.empty()) {
    return absl::InvalidArgumentError(
        "etcd password is set without username (a password needs its user)");
  }

  std::call_once(curl_init_once, [] { curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (curl_init_result != CURLE_OK) {
    return absl::InternalError(
        absl::StrCat("libcurl: curl_global_init: ", curl_easy_strerror(curl_init_result)));
  }

  std::unique_ptr<EtcdSource> source(new EtcdSource());
  source->loop_ = std::make_unique<Loop>(std::move(options));
  Loop* loop = source->loop_.get();
  loop->on_event = std::move(on_event);
  loop->on_problem = std::move(on_problem);
  loop->counters = &source->counters_;
  loop->stopping = &source->stopping_;
  if (absl::Status status = loop->Init(); !status.ok()) return status;
  source->thread_ = std::thread([loop] { loop->Run(); });
  source->thread_id_ = source->thread_.get_id();
  return source;
}

EtcdSource::~EtcdSource() { Stop(); }

void EtcdSource::Stop() {
  stopping_.store(true, std::memory_order_release);
  if (loop_ == nullptr) return;
  curl_multi_wakeup(loop_->multi);
  // From a callback (on the source's own thread) only ask; the destructor,
  // called from elsewhere, joins.
  if (std::this_thread::get_id() == thread_id_) return;
  std::lock_guard<std::mutex> lock(stop_mu_);
  if (thread_.joinable()) thread_.join();
}

EtcdSourceStats EtcdSource::stats() const {
  EtcdSourceStats s;
  s.lists = counters_.lists.load(std::memory_order_relaxed);
  s.watches = counters_.watches.load(std::memory_order_relaxed);
  s.watch_breaks = counters_.watch_breaks.load(std::memory_order_relaxed);
  s.failures = counters_.failures.load(std::memory_order_relaxed);
  s.compactions = counters_.compactions.load(std::memory_order_relaxed);
  s.events = counters_.events.load(std::memory_order_relaxed);
  s.bad_values = counters_.bad_values.load(std::memory_order_relaxed);
  s.authentications = counters_.authentications.load(std::memory_order_relaxed);
  s.revision = counters_.revision.load(std::memory_order_relaxed);
  return s;
}

}  // namespace sluice
