/*
 * Omega guest agent: PID 1 of a frontier (microVM) guest.
 *
 * It mounts /dev, /proc, /sys and /tmp, loads the modules listed in
 * /lib/modules/omega/order (dependencies first, as the host resolved them from the
 * kernel's modules.dep), opens the transport the VMM gives it (kernel command line
 * omega.transport=virtio-serial: the port named "omega.agent"; omega.transport=vsock:
 * vsock port 1024) and serves framed requests from the host, one at a time, by running
 * the workload /app/run. When it cannot open that transport it says why on the console
 * and exits: PID 1 exiting panics the kernel, the VMM stops (panic=-1, no reboot), and
 * the host reports the console at once instead of waiting for a ping.
 *
 * Frame: a 12-byte header (u32 payload length, u8 type, 3 zero bytes, u32 request id;
 * big-endian) and the payload. Types:
 *   'P' ping         host -> guest, empty          'p' pong   guest -> host, empty
 *   'R' run          host -> guest: u32 env length, env (KEY=VALUE entries, each
 *                    ended by NUL), then the bytes given to the workload on stdin
 *   'r' result       guest -> host: u32 status (exit code, or 128 + signal), u32 stdout
 *                    length, u32 stderr length, u32 emit length, then the three byte runs
 *   'x' error        guest -> host: a message (the workload could not be started)
 * The workload writes events to emit on file descriptor 3 as records
 * "TOPIC LENGTH\n" followed by LENGTH bytes; the host checks and parses them.
 *
 * While no host is connected to the port, read() returns 0 (EOF): the agent polls
 * every 2 ms, so a guest restored from a snapshot serves as soon as a host connects.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#define PORT_NAME "omega.agent"
#define VSOCK_PORT 1024
#define MAX_FRAME (64u * 1024u * 1024u)
#define MAX_STDERR (64u * 1024u)

struct buf {
  unsigned char *data;
  size_t len;
  size_t cap;
};

static void buf_append (struct buf *b, const void *data, size_t n, size_t limit) {
  if (limit != 0 && b->len + n > limit) {
    n = b->len >= limit ? 0 : limit - b->len;
  }
  if (n == 0) {
    return;
  }
  if (b->len + n > b->cap) {
    size_t cap = b->cap == 0 ? 4096 : b->cap;
    while (cap < b->len + n) {
      cap *= 2;
    }
    unsigned char *next = realloc(b->data, cap);
    if (next == NULL) {
      return;
    }
    b->data = next;
    b->cap = cap;
  }
  memcpy(b->data + b->len, data, n);
  b->len += n;
}

static void put32 (unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

static uint32_t get32 (const unsigned char *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static void log_console (const char *msg) {
  int fd = open("/dev/console", O_WRONLY | O_NOCTTY);
  if (fd >= 0) {
    (void)!write(fd, "omega-agent: ", 13);
    (void)!write(fd, msg, strlen(msg));
    (void)!write(fd, "\n", 1);
    close(fd);
  }
}

static void sleep_ms (long ms) {
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
  nanosleep(&ts, NULL);
}

/* Writes all of `data`; gives up when the host went away */
static int write_all (int fd, const unsigned char *data, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN) {
        sleep_ms(1);
        continue;
      }
      return -1;
    }
    data += w;
    n -= (size_t)w;
  }
  return 0;
}

/* 1 when n bytes were read, 0 at EOF before any byte, -1 on error or EOF mid-way */
static int read_exact (int fd, unsigned char *data, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, data + got, n - got);
    if (r < 0) {
      if (errno == EINTR) {
        continue;
      }
      return -1;
    }
    if (r == 0) {
      return got == 0 ? 0 : -1;
    }
    got += (size_t)r;
  }
  return 1;
}

static int send_frame (int fd, unsigned char type, uint32_t id, const unsigned char *parts[], const size_t lens[], int count) {
  unsigned char header[12];
  size_t total = 0;
  for (int i = 0; i < count; i++) {
    total += lens[i];
  }
  put32(header, (uint32_t)total);
  header[4] = type;
  header[5] = header[6] = header[7] = 0;
  put32(header + 8, id);
  if (write_all(fd, header, sizeof header) != 0) {
    return -1;
  }
  for (int i = 0; i < count; i++) {
    if (lens[i] > 0 && write_all(fd, parts[i], lens[i]) != 0) {
      return -1;
    }
  }
  return 0;
}

/* What a finit_module errno most likely means here */
static const char *module_hint (int err) {
  switch (err) {
    case ENOENT: return " (unknown symbols: a module it depends on is not loaded before it)";
    case ENOEXEC: return " (not a module for this kernel: another release, or still compressed)";
    case EKEYREJECTED: return " (its signature was refused)";
    case ENOMEM: return " (the guest is out of memory)";
    default: return "";
  }
}

static int loaded_modules = 0;
static int failed_modules = 0;

static void load_modules (void) {
  FILE *order = fopen("/lib/modules/omega/order", "r");
  if (order == NULL) {
    log_console("no /lib/modules/omega/order: loading no modules");
    return;
  }
  char line[256];
  while (fgets(line, sizeof line, order) != NULL) {
    line[strcspn(line, "\r\n")] = 0;
    if (line[0] == 0) {
      continue;
    }
    char path[512];
    snprintf(path, sizeof path, "/lib/modules/omega/%s", line);
    char msg[700];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      snprintf(msg, sizeof msg, "cannot open module %s: %s", line, strerror(errno));
      log_console(msg);
      failed_modules++;
      continue;
    }
    if (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST) {
      int err = errno;
      snprintf(msg, sizeof msg, "cannot load module %s: %s%s", line, strerror(err), module_hint(err));
      log_console(msg);
      failed_modules++;
    } else {
      loaded_modules++;
    }
    close(fd);
  }
  fclose(order);
}

/* Up to size - 1 bytes of the file at `path`, NUL-terminated: how many were read, or -1 */
static ssize_t read_text (const char *path, char *buf, size_t size) {
  buf[0] = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return -1;
  }
  ssize_t n = read(fd, buf, size - 1);
  close(fd);
  buf[n > 0 ? n : 0] = 0;
  return n;
}

/* The device of the virtio-serial port named PORT_NAME, or -1 */
static int open_port (void) {
  DIR *dir = opendir("/sys/class/virtio-ports");
  if (dir == NULL) {
    return -1;
  }
  struct dirent *entry;
  int fd = -1;
  while (fd < 0 && (entry = readdir(dir)) != NULL) {
    if (entry->d_name[0] == '.') {
      continue;
    }
    char path[512];
    char name[128];
    snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", entry->d_name);
    if (read_text(path, name, sizeof name) <= 0) {
      continue;
    }
    name[strcspn(name, "\r\n")] = 0;
    if (strcmp(name, PORT_NAME) == 0) {
      snprintf(path, sizeof path, "/dev/%s", entry->d_name);
      fd = open(path, O_RDWR | O_CLOEXEC);
    }
  }
  closedir(dir);
  return fd;
}

static int listen_vsock (void) {
  int s = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) {
    return -1;
  }
  struct sockaddr_vm addr;
  memset(&addr, 0, sizeof addr);
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = VMADDR_CID_ANY;
  addr.svm_port = VSOCK_PORT;
  if (bind(s, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(s, 4) != 0) {
    close(s);
    return -1;
  }
  return s;
}

/* The value of omega.transport= on the kernel command line, or "" when none is given */
static void cmdline_transport (char *out, size_t size) {
  out[0] = 0;
  char line[4096];
  if (read_text("/proc/cmdline", line, sizeof line) <= 0) {
    return;
  }
  const char *at = strstr(line, "omega.transport=");
  if (at == NULL) {
    return;
  }
  at += strlen("omega.transport=");
  size_t len = strcspn(at, " \n");
  if (len >= size) {
    len = size - 1;
  }
  memcpy(out, at, len);
  out[len] = 0;
}

/* Says why the agent cannot serve, and exits (as PID 1 this stops the VM) */
static void fail_transport (const char *what) {
  char msg[600];
  snprintf(msg, sizeof msg, "FATAL: %s (modules: %d loaded, %d failed); exiting", what, loaded_modules, failed_modules);
  log_console(msg);
  sync();
  exit(1);
}

static void reap_orphans (void) {
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

static void set_nonblock (int fd) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* Runs /app/run with `env` and `input`, and sends its result (or an error) as frame `id` */
static int run_workload (int port, uint32_t id, char *env, size_t env_len, const unsigned char *input, size_t input_len) {
  char *envp[512];
  int envc = 0;
  envp[envc++] = "PATH=/bin:/app";
  envp[envc++] = "HOME=/tmp";
  for (size_t i = 0; i < env_len && envc < 510;) {
    size_t n = strnlen(env + i, env_len - i);
    if (i + n >= env_len) {
      break; /* not NUL-terminated: ignore the rest */
    }
    if (n > 0) {
      envp[envc++] = env + i;
    }
    i += n + 1;
  }
  envp[envc] = NULL;

  int in[2], out[2], err[2], emit[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0 || pipe2(emit, O_CLOEXEC) != 0) {
    const char *msg = "cannot create pipes";
    const unsigned char *parts[] = { (const unsigned char *)msg };
    const size_t lens[] = { strlen(msg) };
    return send_frame(port, 'x', id, parts, lens, 1);
  }
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    dup2(emit[1], 3);
    if (chdir("/app") != 0) {
      _exit(126);
    }
    char *argv[] = { "/app/run", NULL };
    execve("/app/run", argv, envp);
    dprintf(2, "omega-agent: cannot execute /app/run: %s\n", strerror(errno));
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  close(err[1]);
  close(emit[1]);
  if (pid < 0) {
    close(in[1]);
    close(out[0]);
    close(err[0]);
    close(emit[0]);
    const char *msg = "cannot fork the workload";
    const unsigned char *parts[] = { (const unsigned char *)msg };
    const size_t lens[] = { strlen(msg) };
    return send_frame(port, 'x', id, parts, lens, 1);
  }
  set_nonblock(in[1]);
  struct buf bout = { 0 }, berr = { 0 }, bemit = { 0 };
  size_t written = 0;
  int fds_open = 3;
  int in_open = 1;
  if (input_len == 0) {
    close(in[1]);
    in_open = 0;
  }
  struct pollfd pfd[4];
  while (fds_open > 0 || in_open) {
    int n = 0;
    int idx_out = -1, idx_err = -1, idx_emit = -1, idx_in = -1;
    if (out[0] >= 0) { idx_out = n; pfd[n].fd = out[0]; pfd[n].events = POLLIN; n++; }
    if (err[0] >= 0) { idx_err = n; pfd[n].fd = err[0]; pfd[n].events = POLLIN; n++; }
    if (emit[0] >= 0) { idx_emit = n; pfd[n].fd = emit[0]; pfd[n].events = POLLIN; n++; }
    if (in_open) { idx_in = n; pfd[n].fd = in[1]; pfd[n].events = POLLOUT; n++; }
    if (poll(pfd, (nfds_t)n, -1) < 0) {
      if (errno == EINTR) {
        continue;
      }
      break;
    }
    unsigned char chunk[65536];
    int *fds[3] = { &out[0], &err[0], &emit[0] };
    int idx[3] = { idx_out, idx_err, idx_emit };
    struct buf *bufs[3] = { &bout, &berr, &bemit };
    size_t limits[3] = { MAX_FRAME / 2, MAX_STDERR, MAX_FRAME / 4 };
    for (int k = 0; k < 3; k++) {
      if (idx[k] >= 0 && (pfd[idx[k]].revents & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t r = read(*fds[k], chunk, sizeof chunk);
        if (r > 0) {
          buf_append(bufs[k], chunk, (size_t)r, limits[k]);
        } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
          close(*fds[k]);
          *fds[k] = -1;
          fds_open--;
        }
      }
    }
    if (idx_in >= 0 && (pfd[idx_in].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t w = write(in[1], input + written, input_len - written);
      if (w > 0) {
        written += (size_t)w;
      }
      if ((w < 0 && errno != EAGAIN && errno != EINTR) || written >= input_len) {
        close(in[1]);
        in_open = 0;
      }
    }
  }
  if (in_open) {
    close(in[1]);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  uint32_t code = WIFEXITED(status) ? (uint32_t)WEXITSTATUS(status) : 128u + (uint32_t)WTERMSIG(status);
  unsigned char head[16];
  put32(head, code);
  put32(head + 4, (uint32_t)bout.len);
  put32(head + 8, (uint32_t)berr.len);
  put32(head + 12, (uint32_t)bemit.len);
  const unsigned char *parts[] = { head, bout.data, berr.data, bemit.data };
  const size_t lens[] = { sizeof head, bout.len, berr.len, bemit.len };
  int rc = send_frame(port, 'r', id, parts, lens, 4);
  free(bout.data);
  free(berr.data);
  free(bemit.data);
  reap_orphans();
  return rc;
}

/* Serves frames from `fd` until EOF (host gone) or an error; returns 0 at EOF */
static int serve (int fd) {
  for (;;) {
    unsigned char header[12];
    int r = read_exact(fd, header, sizeof header);
    if (r <= 0) {
      return r;
    }
    uint32_t len = get32(header);
    unsigned char type = header[4];
    uint32_t id = get32(header + 8);
    if (len > MAX_FRAME) {
      return -1;
    }
    unsigned char *payload = malloc(len == 0 ? 1 : len);
    if (payload == NULL) {
      return -1;
    }
    if (len > 0 && read_exact(fd, payload, len) != 1) {
      free(payload);
      return -1;
    }
    if (type == 'P') {
      send_frame(fd, 'p', id, NULL, NULL, 0);
    } else if (type == 'R' && len >= 4) {
      uint32_t env_len = get32(payload);
      if (env_len <= len - 4) {
        run_workload(fd, id, (char *)payload + 4, env_len, payload + 4 + env_len, len - 4 - env_len);
      }
    }
    free(payload);
  }
}

int main (void) {
  if (getpid() == 1) {
    mkdir("/dev", 0755);
    mkdir("/proc", 0755);
    mkdir("/sys", 0755);
    mkdir("/tmp", 01777);
    mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
    mount("proc", "/proc", "proc", 0, NULL);
    mount("sysfs", "/sys", "sysfs", 0, NULL);
    mount("tmpfs", "/tmp", "tmpfs", 0, NULL);
    load_modules();
  }
  signal(SIGPIPE, SIG_IGN);
  char transport[32];
  cmdline_transport(transport, sizeof transport);
  int want_serial = strcmp(transport, "vsock") != 0;
  int want_vsock = strcmp(transport, "virtio-serial") != 0;
  int port = -1;
  /* the port appears once virtio_console has probed the device: wait up to 5 s */
  for (int i = 0; want_serial && i < 1000 && port < 0; i++) {
    port = open_port();
    if (port < 0) {
      sleep_ms(5);
    }
  }
  if (port >= 0) {
    log_console("serving on virtio-serial port " PORT_NAME);
    for (;;) {
      if (serve(port) < 0) {
        /* a broken frame: the host reconnects and starts over */
        sleep_ms(2);
      }
      reap_orphans();
      sleep_ms(2);
    }
  }
  if (!want_vsock) {
    fail_transport("the VMM gave a virtio-serial port but none named " PORT_NAME " appeared within 5 s (is virtio_console loaded?)");
  }
  int listener = listen_vsock();
  if (listener < 0) {
    char what[200];
    snprintf(what, sizeof what, "cannot listen on vsock port 1024: %s%s", strerror(errno), want_serial ? " (and no virtio-serial port named " PORT_NAME ")" : "");
    fail_transport(what);
  }
  log_console("serving on vsock port 1024");
  for (;;) {
    int conn = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (conn < 0) {
      sleep_ms(2);
      continue;
    }
    serve(conn);
    close(conn);
    reap_orphans();
  }
}
