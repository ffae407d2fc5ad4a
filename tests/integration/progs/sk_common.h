/*
 * Socket helpers for the socket scenarios (7X_*.c, 8X_*.c), on top of common.h.
 * Patterns come from common.h (cr_fill_off / cr_check_off): a byte stream is
 * "pattern `seed` from offset 0", so a reader checks every byte exactly once, in order.
 */
#ifndef CR_SK_COMMON_H
#define CR_SK_COMMON_H

#include "common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>

static __attribute__((unused)) void sk_nonblock(int fd, int on)
{
	int fl = fcntl(fd, F_GETFL);
	DIE_IF(fl < 0, "F_GETFL");
	DIE_IF(fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK) < 0, "F_SETFL");
}

static __attribute__((unused)) int sk_getint(int fd, int level, int name)
{
	int v = -12345;
	socklen_t l = sizeof(v);
	if (getsockopt(fd, level, name, &v, &l))
		return -12345;
	return v;
}

static __attribute__((unused)) void sk_setint(int fd, int level, int name, int v)
{
	DIE_IF(setsockopt(fd, level, name, &v, sizeof(v)), "setsockopt %d/%d", level, name);
}

/* Abstract name "\0<text>", returns the address length. */
__attribute__((format(printf, 2, 3)))
static __attribute__((unused)) socklen_t sk_abstract(struct sockaddr_un *a, const char *fmt, ...)
{
	va_list ap;
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	va_start(ap, fmt);
	int n = vsnprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, fmt, ap);
	va_end(ap);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

static __attribute__((unused)) socklen_t sk_pathaddr(struct sockaddr_un *a, const char *path)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	strncpy(a->sun_path, path, sizeof(a->sun_path) - 1);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(a->sun_path) + 1);
}

/* Write pattern bytes [off, off + max) without blocking; returns how many went in. */
static __attribute__((unused)) size_t sk_fill(int fd, uint64_t seed, uint64_t off, size_t max)
{
	static char buf[65536];
	size_t done = 0;
	while (done < max) {
		size_t n = max - done < sizeof(buf) ? max - done : sizeof(buf);
		cr_fill_off(buf, n, seed, off + done);
		ssize_t r = send(fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		done += (size_t)r;
	}
	return done;
}

/* Wait until fd is readable (or timeout); 1 if readable. */
static __attribute__((unused)) int sk_wait_in(int fd, int timeout_ms)
{
	struct pollfd p = { fd, POLLIN, 0 };
	for (;;) {
		int r = poll(&p, 1, timeout_ms);
		if (r < 0 && errno == EINTR)
			continue;
		return r > 0;
	}
}

/* Read exactly n bytes of pattern `seed` from offset off; FAIL on anything else. */
static __attribute__((unused)) int sk_expect_stream(const char *what, int fd, uint64_t seed, uint64_t off, size_t n)
{
	static char buf[65536];
	size_t got = 0;
	while (got < n) {
		size_t want = n - got < sizeof(buf) ? n - got : sizeof(buf);
		if (!sk_wait_in(fd, CR_PATIENCE_MS)) {
			cr_fail("%s: only %zu of %zu bytes arrived", what, got, n);
			return 0;
		}
		ssize_t r = recv(fd, buf, want, MSG_DONTWAIT);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r <= 0) {
			cr_fail("%s: read returned %zd (errno %d) after %zu of %zu bytes", what, r, errno, got, n);
			return 0;
		}
		if (!cr_expect_pattern(what, buf, (size_t)r, seed, off + got))
			return 0;
		got += (size_t)r;
	}
	return 1;
}

/* Nothing more is queued (and the connection is not at EOF). */
static __attribute__((unused)) void sk_expect_empty(const char *what, int fd)
{
	char c;
	ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT | MSG_PEEK);
	if (!(r < 0 && errno == EAGAIN))
		cr_fail("%s: expected an empty queue, recv returned %zd (errno %d)", what, r, errno);
}

static __attribute__((unused)) void sk_expect_eof(const char *what, int fd)
{
	char c;
	ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
	if (r != 0)
		cr_fail("%s: expected EOF, recv returned %zd (errno %d)", what, r, errno);
}

/* Receive one message (datagram / seqpacket) and compare it. */
static __attribute__((unused)) void sk_expect_msg(const char *what, int fd, const void *data, size_t n)
{
	char buf[4096];
	if (!sk_wait_in(fd, CR_PATIENCE_MS)) {
		cr_fail("%s: no message", what);
		return;
	}
	ssize_t r;
	if (sk_getint(fd, SOL_SOCKET, SO_TYPE) == SOCK_STREAM) {
		/* no boundaries: the next n bytes (MSG_TRUNC would discard TCP data) */
		size_t got = 0;
		while (got < n && sk_wait_in(fd, CR_PATIENCE_MS)) {
			r = recv(fd, buf + got, n - got, MSG_DONTWAIT);
			if (r <= 0 && !(r < 0 && (errno == EAGAIN || errno == EINTR)))
				break;
			got += r > 0 ? (size_t)r : 0;
		}
		r = (ssize_t)got;
	} else {
		r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC);
	}
	if (r != (ssize_t)n || memcmp(buf, data, n))
		cr_fail("%s: got %zd bytes \"%.*s\", expected %zu \"%.*s\"", what, r, (int)(r > 0 ? r : 0), buf,
			n, (int)n, (const char *)data);
}

/* Send one whole buffer, blocking. */
static __attribute__((unused)) void sk_send_all(int fd, const void *data, size_t n)
{
	const char *p = data;
	while (n) {
		ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
		if (r < 0 && errno == EINTR)
			continue;
		DIE_IF(r <= 0, "send");
		p += r;
		n -= (size_t)r;
	}
}

#endif /* CR_SK_COMMON_H */
