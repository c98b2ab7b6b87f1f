#include "api/socket.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sluice::api {
namespace {

using Clock = std::chrono::steady_clock;

absl::Status Errno(int error, absl::string_view what) { return absl::ErrnoToStatus(error, what); }

absl::StatusOr<sockaddr_un> UnixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty()) return absl::InvalidArgumentError("socket path is empty");
  if (path.size() >= sizeof(addr.sun_path))
    return absl::InvalidArgumentError(absl::StrFormat("socket path %s: %u bytes, at most %u", path,
                                                      path.size(), sizeof(addr.sun_path) - 1));
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

// Whether a server accepts connections on `addr` now. A connect on a Unix
// socket completes or fails at once (EAGAIN: a full backlog, so alive).
bool Answers(const sockaddr_un& addr) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const int rc = connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  const int error = errno;
  close(fd);
  return rc == 0 || error == EAGAIN || error == EINPROGRESS;
}

int RemainingMs(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

// Error texts stay within the codec's limit whatever the status said.
Error BoundedError(Error e) {
  if (e.object.size() > kMaxTextBytes) e.object.resize(kMaxTextBytes);
  if (e.field.size() > kMaxTextBytes) e.field.resize(kMaxTextBytes);
  if (e.message.size() > kMaxTextBytes) e.message.resize(kMaxTextBytes);
  for (std::string* s : {&e.object, &e.field, &e.message})
    for (char& ch : *s)
      if (ch == '\0') ch = ' ';
  return e;
}

}  // namespace

const char* RoleName(Role role) { return role == Role::kWriter ? "writer" : "reader"; }

Role RoleFor(const PeerCredentials& peer, const ServerOptions& options) {
  if (peer.uid == 0) return Role::kWriter;
  if (options.writer_uid && peer.uid == *options.writer_uid) return Role::kWriter;
  if (options.writer_gid && peer.gid == *options.writer_gid) return Role::kWriter;
  return Role::kReader;
}

struct Server::Connection {
  int fd = -1;
  uint64_t id = 0;
  PeerCredentials peer;
  Role role = Role::kReader;
  FrameAssembler in;
  std::string out;
  size_t out_start = 0;    // bytes of `out` already written
  bool closing = false;    // a broken stream: write the Error, then close
  bool peer_done = false;  // the peer shut its side: answer what came, then close
  size_t pending() const { return out.size() - out_start; }
};

Server::Server(ServerOptions options, Handler handler, int listen_fd, dev_t dev, ino_t ino)
    : options_(std::move(options)),
      handler_(std::move(handler)),
      listen_fd_(listen_fd),
      dev_(dev),
      ino_(ino) {}

absl::StatusOr<std::unique_ptr<Server>> Server::Listen(ServerOptions options, Handler handler) {
  absl::StatusOr<sockaddr_un> addr = UnixAddress(options.path);
  if (!addr.ok()) return addr.status();
  // Bound under this name, then renamed onto the path once its mode and
  // group are right.
  const std::string temp = absl::StrCat(options.path, ".", getpid(), ".tmp");
  absl::StatusOr<sockaddr_un> temp_addr = UnixAddress(temp);
  if (!temp_addr.ok()) return temp_addr.status();

  struct stat st {};
  if (lstat(options.path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return absl::FailedPreconditionError(
          absl::StrCat("socket path ", options.path, " exists and is not a socket"));
    if (Answers(*addr))
      return absl::AlreadyExistsError(
          absl::StrCat("socket path ", options.path, ": another server answers there"));
    // Stale: replaced by the rename below.
  } else if (errno != ENOENT) {
    return Errno(errno, absl::StrCat("socket path ", options.path));
  }

  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno(errno, "socket");
  auto fail = [&](absl::string_view what) {
    const int error = errno;
    close(fd);
    unlink(temp.c_str());
    return Errno(error, absl::StrCat(what, " ", temp));
  };
  unlink(temp.c_str());  // left by an earlier process with our pid
  if (bind(fd, reinterpret_cast<const sockaddr*>(&*temp_addr), sizeof(*temp_addr)) != 0)
    return fail("bind");
  if (chmod(temp.c_str(), options.mode) != 0) return fail("chmod");
  if (options.group && chown(temp.c_str(), static_cast<uid_t>(-1), *options.group) != 0)
    return fail("chown");
  if (listen(fd, 64) != 0) return fail("listen");
  if (stat(temp.c_str(), &st) != 0) return fail("stat");
  // A server that started since the check above would lose its path here;
  // two dataplanes racing for one socket is an operator's error either way.
  if (rename(temp.c_str(), options.path.c_str()) != 0) return fail("rename");
  return std::unique_ptr<Server>(
      new Server(std::move(options), std::move(handler), fd, st.st_dev, st.st_ino));
}

Server::~Server() {
  while (!connections_.empty()) Close(connections_.begin()->first);
  if (listen_fd_ >= 0) close(listen_fd_);
  struct stat st {};
  if (stat(options_.path.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_)
    unlink(options_.path.c_str());
}

void Server::AddPollFds(std::vector<pollfd>* fds) const {
  fds->push_back(pollfd{listen_fd_, POLLIN, 0});
  for (const auto& [fd, c] : connections_) {
    short events = 0;
    if (!c->closing && !c->peer_done) events |= POLLIN;
    if (c->pending() > 0) events |= POLLOUT;
    fds->push_back(pollfd{fd, events, 0});
  }
}

void Server::Service(const pollfd* fds, size_t n) {
  bool accept = false;
  // Connections first, accepts last: a descriptor closed here and reused by
  // an accept in the same call is never mistaken for the old connection.
  for (size_t i = 0; i < n; ++i) {
    if (fds[i].revents == 0) continue;
    if (fds[i].fd == listen_fd_) {
      accept = (fds[i].revents & POLLIN) != 0;
      continue;
    }
    auto it = connections_.find(fds[i].fd);
    if (it == connections_.end()) continue;
    Connection& c = *it->second;
    if ((fds[i].revents & POLLERR) != 0) {
      Close(c.fd);
      continue;
    }
    if ((fds[i].revents & (POLLIN | POLLHUP)) != 0 && !c.closing && !c.peer_done) {
      Read(c);
      Dispatch(c);
    }
    if (!Write(c)) {
      Close(c.fd);
    } else if (c.pending() > options_.max_output_bytes) {
      ++stats_.dropped_slow;  // it does not read: not waited for
      Close(c.fd);
    } else if (c.pending() == 0 && (c.closing || c.peer_done || (fds[i].revents & POLLHUP) != 0)) {
      Close(c.fd);  // everything answered and nothing more will come
    }
  }
  if (accept) Accept();
}

absl::Status Server::RunOnce(int timeout_ms) {
  poll_scratch_.clear();
  AddPollFds(&poll_scratch_);
  const int rc = poll(poll_scratch_.data(), poll_scratch_.size(), timeout_ms);
  if (rc < 0) return errno == EINTR ? absl::OkStatus() : Errno(errno, "poll");
  if (rc > 0) Service(poll_scratch_.data(), poll_scratch_.size());
  return absl::OkStatus();
}

void Server::Accept() {
  // A bounded number per call, so that a connect storm cannot starve the
  // connections already open; the rest wait in the backlog.
  for (int i = 0; i < 16; ++i) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN, or a peer gone before accept (ECONNABORTED)
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      close(fd);
      continue;
    }
    if (connections_.size() >= options_.max_clients) {
      ++stats_.refused_too_many;
      // The socket's buffer is empty: one small frame always fits.
      std::string frame;
      if (EncodeFrame(Error{"connection", "",
                            absl::StrFormat("too many clients (at most %u)", options_.max_clients)},
                      0, &frame)
              .ok())
        (void)send(fd, frame.data(), frame.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      close(fd);
      continue;
    }
    auto c = std::make_unique<Connection>();
    c->fd = fd;
    c->id = next_connection_++;
    c->peer = PeerCredentials{cred.pid, cred.uid, cred.gid};
    c->role = RoleFor(c->peer, options_);
    connections_.emplace(fd, std::move(c));
    ++stats_.accepted;
  }
}

void Server::Read(Connection& c) {
  size_t budget = options_.read_bytes_per_poll;
  while (budget > 0) {
    const size_t want = budget < 16384 ? budget : 16384;
    char* p = c.in.Reserve(want);
    const ssize_t got = recv(c.fd, p, want, MSG_DONTWAIT);
    if (got > 0) {
      c.in.Commit(static_cast<size_t>(got));
      budget -= static_cast<size_t>(got);
      if (static_cast<size_t>(got) < want) return;  // drained for now
      continue;
    }
    c.in.Commit(0);
    if (got == 0) {
      c.peer_done = true;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      c.peer_done = true;  // ECONNRESET and the like: nothing more will come
    }
    return;
  }
}

void Server::Dispatch(Connection& c) {
  while (!c.closing) {
    FrameAssembler::Item item = c.in.Next();
    switch (item.kind) {
      case FrameAssembler::Kind::kNeedMore:
        return;
      case FrameAssembler::Kind::kBroken:
        ++stats_.broken_streams;
        Queue(c, ErrorFromStatus(item.error), 0);
        c.closing = true;
        return;
      case FrameAssembler::Kind::kRejected:
        ++stats_.rejected_frames;
        Queue(c, ErrorFromStatus(item.error), item.request_id);
        break;
      case FrameAssembler::Kind::kFrame: {
        const MessageType type = TypeOf(item.frame.message);
        if (!IsRequestMessage(type)) {
          ++stats_.permission_denied;
          Queue(c,
                Error{MessageTypeName(type), "",
                      absl::StrFormat("permission denied: %s is a reply, clients send requests "
                                      "(uid %u)",
                                      MessageTypeName(type), c.peer.uid)},
                item.request_id);
        } else if (IsWriteMessage(type) && c.role != Role::kWriter) {
          ++stats_.permission_denied;
          Queue(c,
                Error{MessageTypeName(type), "",
                      absl::StrFormat("permission denied: %s changes state and this connection "
                                      "is a reader (uid %u)",
                                      MessageTypeName(type), c.peer.uid)},
                item.request_id);
        } else {
          ++stats_.requests;
          Request request;
          request.connection = c.id;
          request.role = c.role;
          request.peer = c.peer;
          request.request_id = item.request_id;
          request.message = &item.frame.message;
          Queue(c, handler_(request), item.request_id);
        }
        break;
      }
    }
    // Replies piling up: write what the socket takes; if they still exceed
    // the bound the client does not read, and Service drops it.
    if (c.pending() > options_.max_output_bytes &&
        (!Write(c) || c.pending() > options_.max_output_bytes))
      return;
  }
}

void Server::Queue(Connection& c, const Message& reply, uint64_t request_id) {
  if (c.out_start > 0 && c.out_start * 2 >= c.out.size()) {
    c.out.erase(0, c.out_start);
    c.out_start = 0;
  }
  if (absl::Status s = EncodeFrame(reply, request_id, &c.out); !s.ok()) {
    Error e = ErrorFromStatus(s);
    e.message = absl::StrCat("reply not sent: ", e.message);
    (void)EncodeFrame(BoundedError(std::move(e)), request_id, &c.out);
  }
}

bool Server::Write(Connection& c) {
  while (c.pending() > 0) {
    const ssize_t sent =
        send(c.fd, c.out.data() + c.out_start, c.pending(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent > 0) {
      c.out_start += static_cast<size_t>(sent);
      continue;
    }
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return true;
    return false;  // EPIPE, ECONNRESET: the peer is gone
  }
  c.out.clear();
  c.out_start = 0;
  return true;
}

void Server::Close(int fd) {
  auto it = connections_.find(fd);
  if (it == connections_.end()) return;
  close(fd);
  connections_.erase(it);
  ++stats_.closed;
}

absl::StatusOr<Client> Client::Connect(const std::string& path, std::chrono::milliseconds timeout) {
  absl::StatusOr<sockaddr_un> addr = UnixAddress(path);
  if (!addr.ok()) return addr.status();
  const Clock::time_point deadline = Clock::now() + timeout;
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno(errno, "socket");
  Client client(fd);
  for (;;) {
    if (connect(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr)) == 0) return client;
    const int error = errno;
    if (error == EINTR) continue;
    if (error == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      if (poll(&p, 1, RemainingMs(deadline)) <= 0)
        return absl::DeadlineExceededError(absl::StrCat("connect ", path, ": timed out"));
      int so_error = 0;
      socklen_t len = sizeof(so_error);
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len);
      if (so_error == 0) return client;
      return Errno(so_error, absl::StrCat("connect ", path));
    }
    if (error == EAGAIN) {
      // The server's backlog is full: it is alive, try again shortly.
      if (Clock::now() >= deadline)
        return absl::DeadlineExceededError(absl::StrCat("connect ", path, ": backlog full"));
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      continue;
    }
    if (error == ECONNREFUSED)
      return absl::UnavailableError(absl::StrCat("connect ", path, ": nobody listens"));
    return Errno(error, absl::StrCat("connect ", path));
  }
}

Client::Client(Client&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      next_request_id_(other.next_request_id_),
      in_(std::move(other.in_)) {}

Client& Client::operator=(Client&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    next_request_id_ = other.next_request_id_;
    in_ = std::move(other.in_);
  }
  return *this;
}

Client::~Client() {
  if (fd_ >= 0) close(fd_);
}

absl::StatusOr<uint64_t> Client::Send(const Message& request, std::chrono::milliseconds timeout) {
  if (fd_ < 0) return absl::FailedPreconditionError("client is not connected");
  const uint64_t id = next_request_id_;
  std::string frame;
  if (absl::Status s = EncodeFrame(request, id, &frame); !s.ok()) return s;
  ++next_request_id_;
  const Clock::time_point deadline = Clock::now() + timeout;
  size_t done = 0;
  while (done < frame.size()) {
    const ssize_t sent =
        send(fd_, frame.data() + done, frame.size() - done, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent > 0) {
      done += static_cast<size_t>(sent);
      continue;
    }
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd_, POLLOUT, 0};
      const int rc = poll(&p, 1, RemainingMs(deadline));
      if (rc == 0)
        return absl::DeadlineExceededError(absl::StrFormat("sending request %u: timed out", id));
      continue;
    }
    return absl::UnavailableError(
        absl::StrFormat("sending request %u: %s", id, std::strerror(errno)));
  }
  return id;
}

absl::StatusOr<Frame> Client::Receive(std::chrono::milliseconds timeout) {
  if (fd_ < 0) return absl::FailedPreconditionError("client is not connected");
  const Clock::time_point deadline = Clock::now() + timeout;
  for (;;) {
    FrameAssembler::Item item = in_.Next();
    switch (item.kind) {
      case FrameAssembler::Kind::kFrame:
        return std::move(item.frame);
      case FrameAssembler::Kind::kRejected:
      case FrameAssembler::Kind::kBroken:
        return item.error;
      case FrameAssembler::Kind::kNeedMore:
        break;
    }
    pollfd p{fd_, POLLIN, 0};
    const int rc = poll(&p, 1, RemainingMs(deadline));
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) return Errno(errno, "poll");
    if (rc == 0) return absl::DeadlineExceededError("waiting for a reply: timed out");
    constexpr size_t kChunk = 64 << 10;
    char* buf = in_.Reserve(kChunk);
    const ssize_t got = recv(fd_, buf, kChunk, MSG_DONTWAIT);
    if (got > 0) {
      in_.Commit(static_cast<size_t>(got));
      continue;
    }
    in_.Commit(0);
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
    if (got == 0)
      return absl::UnavailableError(in_.buffered_bytes() > 0
                                        ? "the server closed the connection within a frame"
                                        : "the server closed the connection");
    return absl::UnavailableError(absl::StrCat("reading a reply: ", std::strerror(errno)));
  }
}

absl::StatusOr<Message> Client::Call(const Message& request, std::chrono::milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  absl::StatusOr<uint64_t> id = Send(request, timeout);
  if (!id.ok()) return id.status();
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    absl::StatusOr<Frame> reply = Receive(left.count() < 0 ? std::chrono::milliseconds(0) : left);
    if (!reply.ok()) return reply.status();
    if (reply->request_id == *id) return std::move(reply->message);
    // Replies come in request order: an older id answers a Call that timed
    // out; a newer one (or 0, the id of a stream error) cannot be ours.
    if (reply->request_id != 0 && reply->request_id < *id) continue;
    if (reply->request_id == 0 && std::holds_alternative<Error>(reply->message))
      return std::move(reply->message);
    return absl::InternalError(
        absl::StrFormat("reply to request %u while waiting for %u", reply->request_id, *id));
  }
}

absl::StatusOr<std::vector<Message>> Client::CallAll(const std::vector<Message>& requests,
                                                     std::chrono::milliseconds timeout) {
  if (fd_ < 0) return absl::FailedPreconditionError("client is not connected");
  const uint64_t first = next_request_id_;
  std::string out;
  for (size_t i = 0; i < requests.size(); ++i)
    if (absl::Status s = EncodeFrame(requests[i], first + i, &out); !s.ok()) return s;
  next_request_id_ += requests.size();
  const Clock::time_point deadline = Clock::now() + timeout;
  std::vector<Message> replies;
  replies.reserve(requests.size());
  size_t sent = 0;
  while (replies.size() < requests.size()) {
    // Take every complete reply first.
    for (FrameAssembler::Item item = in_.Next(); item.kind != FrameAssembler::Kind::kNeedMore;
         item = in_.Next()) {
      if (item.kind != FrameAssembler::Kind::kFrame) return item.error;
      const uint64_t id = item.frame.request_id;
      if (id != 0 && id < first) continue;  // an earlier Call's late reply
      if (id == 0) {
        const auto* e = std::get_if<Error>(&item.frame.message);
        return absl::UnavailableError(absl::StrCat(
            "the server refused the stream: ", e != nullptr ? e->message : "a reply with id 0"));
      }
      if (id != first + replies.size())
        return absl::InternalError(absl::StrFormat("reply to request %u while waiting for %u", id,
                                                   first + replies.size()));
      replies.push_back(std::move(item.frame.message));
      if (replies.size() == requests.size()) return replies;
    }
    pollfd p{fd_, static_cast<short>(POLLIN | (sent < out.size() ? POLLOUT : 0)), 0};
    const int rc = poll(&p, 1, RemainingMs(deadline));
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) return Errno(errno, "poll");
    if (rc == 0)
      return absl::DeadlineExceededError(
          absl::StrFormat("%u of %u replies before the deadline", replies.size(), requests.size()));
    if ((p.revents & POLLOUT) != 0) {
      const ssize_t n =
          send(fd_, out.data() + sent, out.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        sent += static_cast<size_t>(n);
      } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        return absl::UnavailableError(absl::StrCat("sending requests: ", std::strerror(errno)));
      }
    }
    if ((p.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      constexpr size_t kChunk = 64 << 10;
      char* buf = in_.Reserve(kChunk);
      const ssize_t got = recv(fd_, buf, kChunk, MSG_DONTWAIT);
      if (got > 0) {
        in_.Commit(static_cast<size_t>(got));
        continue;
      }
      in_.Commit(0);
      if (got == 0)
        return absl::UnavailableError(
            absl::StrFormat("the server closed the connection after %u of %u replies",
                            replies.size(), requests.size()));
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        return absl::UnavailableError(absl::StrCat("reading replies: ", std::strerror(errno)));
    }
  }
  return replies;
}

}  // namespace sluice::api
