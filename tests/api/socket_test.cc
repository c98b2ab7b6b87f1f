// api/socket: the server and client over real Unix sockets in a temporary
// folder (removed at the end, and checked empty first: no socket file or
// temporary name is left behind). Roles are tested with forked children
// that drop to uid/gid 65534 (nobody) when the test runs as root.
#include "api/socket.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/api/sample_messages.h"

namespace sluice::api {
namespace {

using ::sluice::api::testing::Bytes;
using ::sluice::api::testing::HandFrame;
using std::chrono::milliseconds;
using ::testing::HasSubstr;

constexpr milliseconds kTimeout(5000);
constexpr uid_t kNobody = 65534;

// What the handler saw, read by the test once the loop has stopped.
struct Seen {
  uint64_t connection;
  Role role;
  uid_t uid;
  uint64_t request_id;
  MessageType type;
};

struct TestHandler {
  std::vector<Seen>* log;
  uint64_t generation = 0;
  Message operator()(const Request& r) {
    log->push_back(Seen{r.connection, r.role, r.peer.uid, r.request_id, TypeOf(*r.message)});
    if (const auto* h = std::get_if<Hello>(r.message))
      return HelloReply{kVersion, 42, 0, r.role == Role::kWriter && h->want_write};
    if (const auto* s = std::get_if<Show>(r.message)) {
      if (s->what == "big") return JsonReply{std::string(32 << 10, 'x')};
      if (s->what == "nul") return JsonReply{std::string("\0", 1)};
      if (s->what == "max") return JsonReply{std::string(kMaxJsonBytes, 'm')};
      return JsonReply{absl::StrCat("{\"what\":\"", s->what, "\"}")};
    }
    return Ok{++generation};
  }
};

// Runs a server's RunOnce loop on its own thread until stopped.
class ServerLoop {
 public:
  explicit ServerLoop(Server* server)
      : thread_([this, server] {
          while (!stop_.load()) {
            absl::Status s = server->RunOnce(10);
            if (!s.ok()) ADD_FAILURE() << s;
          }
        }) {}
  ~ServerLoop() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class SocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/sluice-api-test-XXXXXX";
    ASSERT_NE(mkdtemp(templ), nullptr);
    dir_ = templ;
    // Traversable by the children that drop to nobody.
    ASSERT_EQ(chmod(dir_.c_str(), 0711), 0);
    path_ = dir_ + "/sluice.sock";
  }
  void TearDown() override {
    // Everything the servers made is gone once they are.
    std::vector<std::string> left;
    if (DIR* d = opendir(dir_.c_str())) {
      while (dirent* e = readdir(d))
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0)
          left.push_back(e->d_name);
      closedir(d);
    }
    EXPECT_THAT(left, ::testing::IsEmpty());
    for (const std::string& name : left) unlink((dir_ + "/" + name).c_str());
    EXPECT_EQ(rmdir(dir_.c_str()), 0) << std::strerror(errno);
  }

  ServerOptions Options() {
    ServerOptions o;
    o.path = path_;
    o.mode = 0666;
    return o;
  }
  std::unique_ptr<Server> Listen(ServerOptions o) {
    absl::StatusOr<std::unique_ptr<Server>> s = Server::Listen(std::move(o), TestHandler{&log_});
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }
  Client Connect() {
    absl::StatusOr<Client> c = Client::Connect(path_, kTimeout);
    EXPECT_TRUE(c.ok()) << c.status();
    return *std::move(c);
  }

  std::string dir_;
  std::string path_;
  std::vector<Seen> log_;
};

std::string JsonOf(const absl::StatusOr<Message>& m) {
  if (!m.ok()) return absl::StrCat("status: ", m.status().ToString());
  if (const auto* j = std::get_if<JsonReply>(&*m)) return j->json;
  return absl::StrCat("not a JsonReply: ", testing::Dump(*m));
}

void SendRaw(int fd, const std::string& bytes) {
  ASSERT_EQ(send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
}

TEST(Roles, RootConfiguredUidOrGidWrite) {
  ServerOptions o;
  EXPECT_EQ(RoleFor({1, 0, 0}, o), Role::kWriter);
  EXPECT_EQ(RoleFor({1, 0, 1000}, o), Role::kWriter);
  EXPECT_EQ(RoleFor({1, 1000, 1000}, o), Role::kReader);
  o.writer_uid = 1000;
  EXPECT_EQ(RoleFor({1, 1000, 5}, o), Role::kWriter);
  EXPECT_EQ(RoleFor({1, 1001, 5}, o), Role::kReader);
  o.writer_gid = 998;
  EXPECT_EQ(RoleFor({1, 1001, 998}, o), Role::kWriter);
  EXPECT_EQ(RoleFor({1, 1001, 999}, o), Role::kReader);
  EXPECT_STREQ(RoleName(Role::kReader), "reader");
  EXPECT_STREQ(RoleName(Role::kWriter), "writer");
}

TEST_F(SocketTest, SocketFileHasTheRequestedModeAndGroup) {
  ServerOptions o = Options();
  o.mode = 0640;
  const gid_t group = getuid() == 0 ? 65534 : getgid();
  o.group = group;
  std::unique_ptr<Server> server = Listen(o);
  ASSERT_NE(server, nullptr);
  struct stat st {};
  ASSERT_EQ(lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(st.st_gid, group);
  server.reset();
  EXPECT_NE(access(path_.c_str(), F_OK), 0) << "the socket file outlived its server";
}

TEST_F(SocketTest, StaleSocketFileIsReplaced) {
  {
    // A server that died without removing its socket file.
    const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    close(fd);
  }
  // Nobody answers there.
  absl::StatusOr<Client> refused = Client::Connect(path_, kTimeout);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();

  std::unique_ptr<Server> server = Listen(Options());
  ASSERT_NE(server, nullptr);
  ServerLoop loop(server.get());
  Client c = Connect();
  EXPECT_EQ(JsonOf(c.Call(Show{"status"}, kTimeout)), R"({"what":"status"})");
}

TEST_F(SocketTest, SecondServerOnALivePathFails) {
  std::unique_ptr<Server> first = Listen(Options());
  ASSERT_NE(first, nullptr);
  struct stat before {};
  ASSERT_EQ(stat(path_.c_str(), &before), 0);
  absl::StatusOr<std::unique_ptr<Server>> second = Server::Listen(Options(), TestHandler{&log_});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists) << second.status();
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("another server answers there"));
  // The first keeps its file and its clients.
  struct stat after {};
  ASSERT_EQ(stat(path_.c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino);
  ServerLoop loop(first.get());
  Client c = Connect();
  EXPECT_EQ(JsonOf(c.Call(Show{"still"}, kTimeout)), R"({"what":"still"})");
}

TEST_F(SocketTest, PathThatIsNotASocketIsLeftAlone) {
  { std::ofstream(path_) << "precious"; }
  absl::StatusOr<std::unique_ptr<Server>> s = Server::Listen(Options(), TestHandler{&log_});
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition) << s.status();
  std::ifstream in(path_);
  std::string content;
  in >> content;
  EXPECT_EQ(content, "precious");
  unlink(path_.c_str());

  ServerOptions o = Options();
  o.path = dir_ + "/" + std::string(120, 'p');
  s = Server::Listen(o, TestHandler{&log_});
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << s.status();
}

TEST_F(SocketTest, ServerRemovesOnlyItsOwnSocketFile) {
  std::unique_ptr<Server> old_server = Listen(Options());
  ASSERT_NE(old_server, nullptr);
  ASSERT_EQ(unlink(path_.c_str()), 0);                    // an operator removed it...
  std::unique_ptr<Server> successor = Listen(Options());  // ...and a new one started
  ASSERT_NE(successor, nullptr);
  old_server.reset();
  EXPECT_EQ(access(path_.c_str(), F_OK), 0) << "the old server removed its successor's socket";
  ServerLoop loop(successor.get());
  Client c = Connect();
  EXPECT_EQ(JsonOf(c.Call(Show{"new"}, kTimeout)), R"({"what":"new"})");
}

TEST_F(SocketTest, TwoClientsAtOnceEachGetTheirRepliesInOrder) {
  ServerOptions o = Options();
  o.writer_uid = getuid();
  std::unique_ptr<Server> server = Listen(o);
  ASSERT_NE(server, nullptr);
  ServerLoop loop(server.get());
  Client a = Connect();
  Client b = Connect();
  ASSERT_TRUE(a.Send(Show{"a"}, kTimeout).ok());
  ASSERT_TRUE(b.Send(Show{"b"}, kTimeout).ok());
  ASSERT_TRUE(b.Send(Hello{"b", true}, kTimeout).ok());
  ASSERT_TRUE(a.Send(SyncBegin{5}, kTimeout).ok());

  absl::StatusOr<Frame> f = b.Receive(kTimeout);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->request_id, 1u);
  EXPECT_EQ(std::get<JsonReply>(f->message).json, R"({"what":"b"})");
  f = a.Receive(kTimeout);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->request_id, 1u);
  EXPECT_EQ(std::get<JsonReply>(f->message).json, R"({"what":"a"})");
  f = a.Receive(kTimeout);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->request_id, 2u);
  EXPECT_TRUE(std::holds_alternative<Ok>(f->message)) << testing::Dump(f->message);
  f = b.Receive(kTimeout);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->request_id, 2u);
  EXPECT_TRUE(std::get<HelloReply>(f->message).writer);

  loop.Stop();
  EXPECT_EQ(server->stats().accepted, 2u);
  EXPECT_EQ(server->stats().requests, 4u);
  std::set<uint64_t> connections;
  for (const Seen& s : log_) {
    connections.insert(s.connection);
    EXPECT_EQ(s.role, Role::kWriter);
  }
  EXPECT_EQ(connections.size(), 2u);
  EXPECT_EQ(log_.size(), 4u);
}

TEST_F(SocketTest, CallAllSendsABatchAndReturnsRepliesInOrder) {
  ServerOptions o = Options();
  o.writer_uid = getuid();
  std::unique_ptr<Server> server = Listen(o);
  ASSERT_NE(server, nullptr);
  ServerLoop loop(server.get());
  Client c = Connect();
  // A full sync of 3000 Service ports: about 200 KiB of requests.
  std::vector<Message> sync;
  sync.push_back(SyncBegin{1});
  for (uint32_t i = 0; i < 3000; ++i) {
    ServicePort p;
    p.key = ServicePortKey{"default", absl::StrCat("svc-", i), "", L4Protocol::kTcp};
    p.type = "ClusterIP";
    p.port = 80;
    p.cluster_ips = {0x0a600000 + i};
    sync.push_back(ServicePortUpsert{p});
    sync.push_back(EndpointSetReplace{p.key, {Endpoint{0x0af40000 + i, 8080}}});
  }
  sync.push_back(Show{"in the middle"});
  sync.push_back(SyncEnd{1});
  absl::StatusOr<std::vector<Message>> replies = c.CallAll(sync, kTimeout);
  ASSERT_TRUE(replies.ok()) << replies.status();
  ASSERT_EQ(replies->size(), sync.size());
  uint64_t generation = 0;
  for (size_t i = 0; i < sync.size(); ++i) {
    if (std::holds_alternative<Show>(sync[i])) {
      EXPECT_EQ(std::get<JsonReply>((*replies)[i]).json, R"({"what":"in the middle"})");
    } else {
      ASSERT_TRUE(std::holds_alternative<Ok>((*replies)[i])) << i;
      EXPECT_EQ(std::get<Ok>((*replies)[i]).generation, ++generation);
    }
  }
  // A batch the codec refuses is not sent at all; the ids go on after it.
  ServicePortDelete bad{testing::WebKey()};
  bad.key.namespace_name.push_back('\0');
  replies = c.CallAll({Show{"never"}, bad}, kTimeout);
  EXPECT_EQ(replies.status().code(), absl::StatusCode::kInvalidArgument) << replies.status();
  EXPECT_EQ(JsonOf(c.Call(Show{"after"}, kTimeout)), R"({"what":"after"})");
  loop.Stop();
  EXPECT_EQ(server->stats().requests, sync.size() + 1);
}

TEST_F(SocketTest, FrameSplitAcrossWritesAndSeveralFramesInOneWrite) {
  std::unique_ptr<Server> server = Listen(Options());
  ASSERT_NE(server, nullptr);
  ServerLoop loop(server.get());
  Client c = Connect();
  const std::string first = *EncodeFrame(Show{"split"}, 1);
  // Three pieces: inside the header, inside the payload, the rest. The
  // pauses let the server read each piece alone (it must not matter).
  SendRaw(c.fd(), first.substr(0, 7));
  std::this_thread::sleep_for(milliseconds(20));
  SendRaw(c.fd(), first.substr(7, 22));
  std::this_thread::sleep_for(milliseconds(20));
  SendRaw(c.fd(), first.substr(29));
  SendRaw(c.fd(), *EncodeFrame(Show{"two"}, 2) + *EncodeFrame(Show{"three"}, 3) +
                      *EncodeFrame(Hello{"four", false}, 4));
  const char* expected[] = {R"({"what":"split"})", R"({"what":"two"})", R"({"what":"three"})"};
  for (uint64_t id = 1; id <= 3; ++id) {
    absl::StatusOr<Frame> f = c.Receive(kTimeout);
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_EQ(f->request_id, id);
    EXPECT_EQ(std::get<JsonReply>(f->message).json, expected[id - 1]);
  }
  absl::StatusOr<Frame> f = c.Receive(kTimeout);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->request_id, 4u);
  EXPECT_TRUE(std::holds_alternative<HelloReply>(f->message));
  loop.Stop();
  EXPECT_EQ(server->stats().requests, 4u);
  EXPECT_EQ(server->stats().rejected_frames, 0u);
}

TEST_F(SocketTest, BrokenStreamIsAnsweredThenClosed) {
  std::unique_ptr<Server> server = Listen(Options());
  ASSERT_NE(server, nullptr);
  ServerLoop loop(server.get());
  Client c = Connect();
  SendRaw(c.fd(), HandFrame(static_cast<uint16_t>(MessageType::kShow), "", 9, kMagic, 2));
  absl::StatusOr<Frame> f = c.Receive(kTimeout);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->request_id, 0u);
  const Error& e = std::get<Error>(f->message);
  EXPECT_EQ(e.object, "frame");
  EXPECT_EQ(e.field, "version");
  EXPECT_EQ(e.message, "2 is not supported (this end speaks version 1)");
  absl::StatusOr<Frame> after = c.Receive(kTimeout);
  EXPECT_EQ(after.status().code(), absl::StatusCode::kUnavailable) << after.status();

  Client stray = Connect();
  SendRaw(stray.fd(), "GET / HTTP/1.0\r\n\r\n");
  f = stray.Receive(kTimeout);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(std::get<Error>(f->message).field, "magic");
  EXPECT_EQ(stray.Receive(kTimeout).status().code(), absl::StatusCode::kUnavailable);
  loop.Stop();
  EXPECT_EQ(server->stats().broken_streams, 2u);
  EXPECT_EQ(server->stats().requests, 0u);
  EXPECT_EQ(server->client_count(), 0u);
}

TEST_F(SocketTest, MalformedFrameIsAnsweredAndTheConnectionGoesOn) {
  std::unique_ptr<Server> server = Listen(Options());
  ASSERT_NE(server, nullptr);
  ServerLoop loop(server.get());
  Client c = Connect();
  SendRaw(c.fd(), HandFrame(99, "abc", 7) +
                      HandFrame(static_cast<uint16_t>(MessageType::kServicePortDelete),
                                Bytes().Str("default").Str("web").Str("").U8(7).str(), 8));
  absl::StatusOr<Frame> f = c.Receive(kTimeout);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->request_id, 7u);
  EXPECT_EQ(std::get<Error>(f->message).message, "99 is not a message type");
  f = c.Receive(kTimeout);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->request_id, 8u);
  const Error& e = std::get<Error>(f->message);
  EXPECT_EQ(e.object, "ServicePortDelete");
  EXPECT_EQ(e.field, "key.protocol");
  // Still served; the ids continue from the client's own counter.
  EXPECT_EQ(JsonOf(c.Call(Show{"after"}, kTimeout)), R"({"what":"after"})");
  loop.Stop();
  EXPECT_EQ(server->stats().rejected_frames, 2u);
  EXPECT_EQ(server->stats().requests, 1u);
}

TEST_F(SocketTest, RepliesFromAClientAreRefused) {
  std::unique_ptr<Server> server = Listen(Options());
  ASSERT_NE(server, nullptr);
  ServerLoop loop(server.get());
  Client c = Connect();
  absl::StatusOr<Message> r = c.Call(Ok{1}, kTimeout);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(std::get<Error>(*r).message, HasSubstr("permission denied: Ok is a reply"));
  loop.Stop();
  EXPECT_TRUE(log_.empty());
}

TEST_F(SocketTest, UnencodableReplyBecomesAnError) {
  std::unique_ptr<Server> server = Listen(Options());
  ASSERT_NE(server, nullptr);
  ServerLoop loop(server.get());
  Client c = Connect();
  absl::StatusOr<Message> r = c.Call(Show{"nul"}, kTimeout);
  ASSERT_TRUE(r.ok()) << r.status();
  const Error& e = std::get<Error>(*r);
  EXPECT_EQ(e.object, "JsonReply");
  EXPECT_EQ(e.field, "json");
  EXPECT_EQ(e.message, "reply not sent: contains a NUL byte at offset 0");
}

TEST_F(SocketTest, LargestFramesCrossTheSocketBothWays) {
  ServerOptions o = Options();
  o.writer_uid = getuid();
  std::unique_ptr<Server> server = Listen(o);
  ASSERT_NE(server, nullptr);
  ServerLoop loop(server.get());
  Client c = Connect();
  // A request of many neighbours (180 KiB: several reads of the server's
  // per-round budget) and a reply that fills a whole frame (16 MiB).
  NeighborsReplace many;
  for (uint32_t i = 0; i < kMaxNeighbors; ++i)
    many.neighbors.push_back(NeighborEntry{PortRole::kPods, i, testing::Mac(i & 0xff)});
  absl::StatusOr<Message> r = c.Call(many, kTimeout);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(std::holds_alternative<Ok>(*r)) << testing::Dump(*r);
  r = c.Call(Show{"max"}, kTimeout);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(std::get<JsonReply>(*r).json, std::string(kMaxJsonBytes, 'm'));
  loop.Stop();
  EXPECT_EQ(server->stats().requests, 2u);
  EXPECT_EQ(server->stats().dropped_slow, 0u);
}

TEST_F(SocketTest, ClientThatNeverReadsIsDroppedWithoutBlockingTheServer) {
  ServerOptions o = Options();
  o.max_output_bytes = 64 << 10;
  std::unique_ptr<Server> server = Listen(o);
  ASSERT_NE(server, nullptr);
  ServerLoop loop(server.get());
  Client hog = Connect();
  // 300 requests of a 32 KiB reply each (9.6 MB), none read: far beyond
  // what the socket buffers and the 64 KiB bound hold.
  int sent = 0;
  for (; sent < 300; ++sent)
    if (!hog.Send(Show{"big"}, kTimeout).ok()) break;  // dropped while sending
  // Meanwhile another client is served.
  Client other = Connect();
  absl::StatusOr<Message> r = other.Call(Hello{"other", false}, kTimeout);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(std::holds_alternative<HelloReply>(*r));
  // The hog finds its connection closed after what the kernel had buffered.
  int replies = 0;
  absl::Status end;
  for (;;) {
    absl::StatusOr<Frame> f = hog.Receive(kTimeout);
    if (!f.ok()) {
      end = f.status();
      break;
    }
    ++replies;
  }
  EXPECT_EQ(end.code(), absl::StatusCode::kUnavailable) << end;
  EXPECT_LT(replies, 300);
  EXPECT_GT(sent, 0);
  loop.Stop();
  EXPECT_EQ(server->stats().dropped_slow, 1u);
  EXPECT_EQ(server->client_count(), 1u);  // `other`
}

TEST_F(SocketTest, TooManyClientsAreToldAndClosed) {
  ServerOptions o = Options();
  o.max_clients = 1;
  std::unique_ptr<Server> server = Listen(o);
  ASSERT_NE(server, nullptr);
  ServerLoop loop(server.get());
  Client first = Connect();
  EXPECT_EQ(JsonOf(first.Call(Show{"1"}, kTimeout)), R"({"what":"1"})");
  Client second = Connect();
  absl::StatusOr<Frame> f = second.Receive(kTimeout);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(std::get<Error>(f->message).message, "too many clients (at most 1)");
  EXPECT_EQ(second.Receive(kTimeout).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(JsonOf(first.Call(Show{"1 again"}, kTimeout)), R"({"what":"1 again"})");
  loop.Stop();
  EXPECT_EQ(server->stats().refused_too_many, 1u);
}

TEST_F(SocketTest, HalfClosedClientStillGetsItsReplies) {
  std::unique_ptr<Server> server = Listen(Options());
  ASSERT_NE(server, nullptr);
  ServerLoop loop(server.get());
  Client c = Connect();
  ASSERT_TRUE(c.Send(Show{"last words"}, kTimeout).ok());
  ASSERT_EQ(shutdown(c.fd(), SHUT_WR), 0);
  absl::StatusOr<Frame> f = c.Receive(kTimeout);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(std::get<JsonReply>(f->message).json, R"({"what":"last words"})");
  EXPECT_EQ(c.Receive(kTimeout).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(SocketTest, ClientTimesOutAndSkipsTheLateReply) {
  std::unique_ptr<Server> server = Listen(Options());
  ASSERT_NE(server, nullptr);
  // Not served yet: the connection waits in the backlog, nothing answers.
  Client c = Connect();
  absl::StatusOr<Message> r = c.Call(Show{"late"}, milliseconds(50));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  ServerLoop loop(server.get());
  // The reply to "late" arrives first and is skipped.
  EXPECT_EQ(JsonOf(c.Call(Show{"on time"}, kTimeout)), R"({"what":"on time"})");
}

TEST_F(SocketTest, ConnectErrors) {
  absl::StatusOr<Client> c = Client::Connect(dir_ + "/absent.sock", kTimeout);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound) << c.status();
  c = Client::Connect(std::string(200, 'x'), kTimeout);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
}

// Roles through real credentials: a forked child drops to `uid`/`gid` and
// runs `body` (which returns "" or what went wrong) while this thread serves.
// No thread runs at fork time (the server loop is this thread's).
std::string RunAsChild(Server& server, uid_t uid, gid_t gid,
                       const std::function<std::string()>& body) {
  int report[2];
  if (pipe(report) != 0) return "pipe failed";
  const pid_t pid = fork();
  if (pid < 0) return "fork failed";
  if (pid == 0) {
    close(report[0]);
    std::string r;
    if (setgroups(0, nullptr) != 0 || setgid(gid) != 0 || setuid(uid) != 0)
      r = absl::StrCat("dropping privileges: ", std::strerror(errno));
    else
      r = body();
    if (!r.empty()) (void)!write(report[1], r.data(), r.size());
    close(report[1]);
    _exit(r.empty() ? 0 : 1);
  }
  close(report[1]);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  int status = 0;
  bool exited = false;
  while (!exited && std::chrono::steady_clock::now() < deadline) {
    if (absl::Status s = server.RunOnce(10); !s.ok()) ADD_FAILURE() << s;
    exited = waitpid(pid, &status, WNOHANG) == pid;
  }
  if (!exited) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  std::string r;
  char buf[512];
  for (ssize_t n; (n = read(report[0], buf, sizeof(buf))) > 0;) r.append(buf, n);
  close(report[0]);
  if (!exited) return "child timed out: " + r;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return r.empty() ? absl::StrCat("child failed, status ", status) : r;
  return r;
}

// In the child: what a client with the given expectations sees.
std::string ExpectRole(const std::string& path, bool writer, uid_t uid) {
  absl::StatusOr<Client> c = Client::Connect(path, kTimeout);
  if (!c.ok()) return c.status().ToString();
  absl::StatusOr<Message> hello = c->Call(Hello{"child", true}, kTimeout);
  if (!hello.ok() || !std::holds_alternative<HelloReply>(*hello))
    return "Hello: " + (hello.ok() ? testing::Dump(*hello) : hello.status().ToString());
  if (std::get<HelloReply>(*hello).writer != writer) return "Hello: wrong role granted";
  absl::StatusOr<Message> sync = c->Call(SyncBegin{1}, kTimeout);
  if (!sync.ok()) return sync.status().ToString();
  if (writer) {
    if (!std::holds_alternative<Ok>(*sync)) return "SyncBegin: " + testing::Dump(*sync);
  } else {
    const auto* e = std::get_if<Error>(&*sync);
    const std::string want = absl::StrCat(
        "permission denied: SyncBegin changes state and this connection is a reader (uid ", uid,
        ")");
    if (e == nullptr || e->message != want || e->object != "SyncBegin")
      return "SyncBegin: " + testing::Dump(*sync);
  }
  absl::StatusOr<Message> show = c->Call(Show{"peers"}, kTimeout);
  if (JsonOf(show) != R"({"what":"peers"})") return "Show: " + JsonOf(show);
  return "";
}

TEST_F(SocketTest, ReaderMayQueryButNotWrite) {
  std::unique_ptr<Server> server = Listen(Options());
  ASSERT_NE(server, nullptr);
  if (getuid() != 0) {
    // Not root: this very process is a reader.
    ServerLoop loop(server.get());
    EXPECT_EQ(ExpectRole(path_, false, getuid()), "");
    loop.Stop();
  } else {
    EXPECT_EQ(
        RunAsChild(*server, kNobody, kNobody, [this] { return ExpectRole(path_, false, kNobody); }),
        "");
  }
  EXPECT_EQ(server->stats().permission_denied, 1u);
  ASSERT_EQ(log_.size(), 2u);  // Hello and Show; SyncBegin never reached the handler
  EXPECT_EQ(log_[0].type, MessageType::kHello);
  EXPECT_EQ(log_[0].role, Role::kReader);
  EXPECT_EQ(log_[1].type, MessageType::kShow);
}

TEST_F(SocketTest, WriterByRootByUidAndByGid) {
  ServerOptions o = Options();
  o.writer_uid = kNobody;
  o.writer_gid = 4242;
  std::unique_ptr<Server> server = Listen(o);
  ASSERT_NE(server, nullptr);
  if (getuid() != 0) {
    server.reset();
    GTEST_SKIP() << "needs root to connect under other credentials";
  }
  // Root.
  EXPECT_EQ(RunAsChild(*server, 0, 0, [this] { return ExpectRole(path_, true, 0); }), "");
  // The configured uid.
  EXPECT_EQ(
      RunAsChild(*server, kNobody, kNobody, [this] { return ExpectRole(path_, true, kNobody); }),
      "");
  // The configured gid, another uid.
  EXPECT_EQ(RunAsChild(*server, 65533, 4242, [this] { return ExpectRole(path_, true, 65533); }),
            "");
  // Neither.
  EXPECT_EQ(RunAsChild(*server, 65533, 65533, [this] { return ExpectRole(path_, false, 65533); }),
            "");
  std::set<uid_t> writers;
  for (const Seen& s : log_)
    if (s.role == Role::kWriter) writers.insert(s.uid);
  EXPECT_EQ(writers, (std::set<uid_t>{0, kNobody, 65533}));
  EXPECT_EQ(server->stats().permission_denied, 1u);
}

}  // namespace
}  // namespace sluice::api
