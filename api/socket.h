// The Unix stream socket that carries api::Message frames (api/codec.h)
// between the dataplane (Server) and its clients, sluice-control and
// sluicectl (Client).
//
// Server. Listens on a path: the socket is bound under a temporary name
// beside it, given its file mode and group, then renamed onto the path, so
// the path never exists with other permissions and a stale socket file (its
// server gone) is replaced in one step. A path where a server still answers
// is an error (AlreadyExists); so is a path that is not a socket. The
// directory must exist. Every descriptor is non-blocking: the server is
// driven by its owner's poll() loop (AddPollFds + Service, or RunOnce) and
// never waits for a client. Per connection it reassembles frames from partial
// reads, hands each decoded request to the handler with the connection's
// role, and queues the handler's reply under the request's id; replies go
// out in request order. A client whose queued replies exceed
// max_output_bytes after a write attempt (it does not read) is dropped.
// A frame whose header is not sound (magic, version, flags, length) is
// answered with an Error and the connection closed once that Error is
// written; a frame with an unknown type or a malformed payload is answered
// with an Error and the connection goes on.
//
// Roles. The peer's credentials are read with SO_PEERCRED at accept: uid 0,
// uid == writer_uid or gid == writer_gid (the peer's primary group) makes a
// writer; anyone else who can open the socket file (its mode and group
// decide that) is a reader. A reader's write message (IsWriteMessage) is
// answered "permission denied: ... (uid N)" without reaching the handler; so
// is every message that is not a request (IsRequestMessage) from anyone.
//
// Client. Blocking calls with timeouts: Connect, then Call (send a request,
// wait for the reply bearing its id) or CallAll (a batch, such as a full
// sync, written in large pieces while the replies are read). Replies to
// earlier requests whose Call timed out are skipped.
//
// Errors (absl::Status):
//   Server::Listen: InvalidArgument (path empty or longer than sun_path
//     allows), AlreadyExists (a server answers on the path), FailedPrecondition
//     (the path exists and is not a socket), and the errno of a failing
//     socket/bind/listen/chmod/chown/rename as its absl code.
//   Client::Connect: NotFound (no such path), Unavailable (nobody listens),
//     PermissionDenied, DeadlineExceeded.
//   Client::Call/CallAll/Send/Receive: DeadlineExceeded, Unavailable (the
//     server closed the connection, or CallAll's stream was refused as a
//     whole), InvalidArgument (a request the codec refuses, or a reply that
//     does not decode), Internal (a reply out of order).
//
// Concurrency: a Server is owned by one thread (the dataplane's control
// thread): every call, and the handler, run on it; the handler must not
// call back into the Server. A Client is used by one thread at a time.
// Neither is signal-safe. Writes use MSG_NOSIGNAL: a closed peer never
// raises SIGPIPE. No DPDK.
#ifndef SLUICE_API_SOCKET_H_
#define SLUICE_API_SOCKET_H_

#include <poll.h>
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "api/codec.h"
#include "api/messages.h"

namespace sluice::api {

enum class Role : uint8_t { kReader, kWriter };
const char* RoleName(Role role);  // "reader", "writer"

struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

struct ServerOptions {
  std::string path;
  mode_t mode = 0660;               // the socket file's permission bits
  std::optional<gid_t> group;       // the socket file's group; unset: the process's
  std::optional<uid_t> writer_uid;  // writers besides root
  std::optional<gid_t> writer_gid;
  size_t max_clients = 32;  // more are answered Error "too many clients" and closed
  // Queued reply bytes per client beyond which (after a write attempt) the
  // client is dropped. Room for one largest reply plus as much again.
  size_t max_output_bytes = 2 * size_t{kMaxMessageBytes};
  size_t read_bytes_per_poll = 64 << 10;  // per client and Service(): fairness
};

// The role a peer gets from `options` (the rule above).
Role RoleFor(const PeerCredentials& peer, const ServerOptions& options);

struct Request {
  uint64_t connection = 0;  // unique for the server's lifetime
  Role role = Role::kReader;
  PeerCredentials peer;
  uint64_t request_id = 0;
  const Message* message = nullptr;  // a request (IsRequestMessage), never null
};

// Returns the reply to `request` (Ok, Error, HelloReply, JsonReply). A reply
// the codec cannot encode is replaced by an Error saying why.
using Handler = std::function<Message(const Request& request)>;

// What the server did, for tests and the dataplane's counters.
struct ServerStats {
  uint64_t accepted = 0;
  uint64_t refused_too_many = 0;   // over max_clients
  uint64_t requests = 0;           // handed to the handler
  uint64_t permission_denied = 0;  // a reader's write, or a non-request
  uint64_t rejected_frames = 0;    // unknown type or malformed payload: Error, connection kept
  uint64_t broken_streams = 0;     // bad header: Error, connection closed
  uint64_t dropped_slow = 0;       // replies beyond max_output_bytes
  uint64_t closed = 0;             // every connection closed, whatever the reason
};

class Server {
 public:
  static absl::StatusOr<std::unique_ptr<Server>> Listen(ServerOptions options, Handler handler);
  // Closes every connection and removes the socket file if it is still ours.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Appends what to poll: the listening socket (POLLIN) and each connection
  // (POLLIN while it may send, POLLOUT while replies wait).
  void AddPollFds(std::vector<pollfd>* fds) const;
  // Accepts, reads, answers and writes for the entries of `fds` that belong
  // to this server (others are ignored), as poll() filled them.
  void Service(const pollfd* fds, size_t n);
  // poll() on this server's descriptors alone for up to `timeout_ms` (0: do
  // not wait), then Service(). Errors: a failing poll() other than EINTR.
  absl::Status RunOnce(int timeout_ms);

  size_t client_count() const { return connections_.size(); }
  const ServerStats& stats() const { return stats_; }
  const std::string& path() const { return options_.path; }

 private:
  struct Connection;
  Server(ServerOptions options, Handler handler, int listen_fd, dev_t dev, ino_t ino);
  void Accept();
  void Read(Connection& c);
  void Dispatch(Connection& c);
  void Queue(Connection& c, const Message& reply, uint64_t request_id);
  // Writes what the socket takes now; false when the peer is gone.
  bool Write(Connection& c);
  void Close(int fd);

  ServerOptions options_;
  Handler handler_;
  int listen_fd_ = -1;
  dev_t dev_ = 0;  // the socket file's identity, to remove only our own
  ino_t ino_ = 0;
  uint64_t next_connection_ = 1;
  std::map<int, std::unique_ptr<Connection>> connections_;
  std::vector<pollfd> poll_scratch_;
  ServerStats stats_;
};

class Client {
 public:
  static absl::StatusOr<Client> Connect(const std::string& path, std::chrono::milliseconds timeout);
  Client(Client&& other) noexcept;
  Client& operator=(Client&& other) noexcept;
  ~Client();

  // Sends `request` and returns its reply (an Error reply is a reply, not a
  // failed status).
  absl::StatusOr<Message> Call(const Message& request, std::chrono::milliseconds timeout);
  // Sends every request and returns their replies in request order. The
  // frames go out in large writes while replies are read, so neither side's
  // buffers fill and a long batch costs few system calls. A request the
  // codec refuses fails the whole call before anything is sent.
  absl::StatusOr<std::vector<Message>> CallAll(const std::vector<Message>& requests,
                                               std::chrono::milliseconds timeout);
  // The two halves of Call: Send returns the request id it used; Receive
  // returns the next frame whatever its id.
  absl::StatusOr<uint64_t> Send(const Message& request, std::chrono::milliseconds timeout);
  absl::StatusOr<Frame> Receive(std::chrono::milliseconds timeout);

  int fd() const { return fd_; }

 private:
  explicit Client(int fd) : fd_(fd) {}

  int fd_ = -1;
  uint64_t next_request_id_ = 1;
  FrameAssembler in_;
};

}  // namespace sluice::api

#endif  // SLUICE_API_SOCKET_H_
