/*
 * epoll-floor.c: the floor under zen's event-driven servers.
 *
 * A bare epoll server that answers the zen protocol and does nothing
 * else: no bound on input or output, no idle timeout, no busy answer, no
 * graceful shutdown, no counters, no log. It makes the system calls an
 * answer cannot do without (one epoll_wait, one read and one write per
 * batch of questions), so a server cannot go faster than this on the same
 * machine; scripts/performance.py measures srv-poll and srv-async against
 * it in the same round (target: at least 0.95 of it).
 *
 *   cc -O2 -o epoll-floor scripts/epoll-floor.c
 *   ./epoll-floor -p 0        # prints: listening on 127.0.0.1:PORT
 *
 * Loopback only. SIGTERM ends it at once (the default action).
 */
#define _GNU_SOURCE /* accept4 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 8192
#define MAX_EVENTS 1024

static const char *QUESTIONS[] = {
    "Beautiful is better than?", "Explicit is better than?", "Simple is better than?",
    "Complex is better than?", "Flat is better than?", "Sparse is better than?",
    "Now is better than?"};
static const char *ANSWERS[] = {"ugly.", "implicit.", "complex.", "complicated.",
                                "nested.", "dense.", "never."};
static const char UNKNOWN[] = "Error: unknown aphorism.";

/* One connection: its socket, and the bytes of a question not yet complete. */
struct conn {
    int fd;
    size_t len;
    char in[BUF];
};

static const char *answer(const char *q, size_t n) {
    for (size_t i = 0; i < sizeof QUESTIONS / sizeof *QUESTIONS; i++)
        if (strlen(QUESTIONS[i]) == n && memcmp(QUESTIONS[i], q, n) == 0) return ANSWERS[i];
    return UNKNOWN;
}

/* Writes all of `out`, waiting for room if the socket is full. */
static int write_all(int fd, const char *out, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, out, n);
        if (w > 0) {
            out += w;
            n -= (size_t)w;
        } else if (w < 0 && errno == EAGAIN) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            poll(&p, 1, -1);
        } else if (!(w < 0 && errno == EINTR)) {
            return -1;
        }
    }
    return 0;
}

/* Reads once, answers every complete question with one write; -1: close. */
static int serve(int fd, struct conn *c) {
    ssize_t r = read(fd, c->in + c->len, BUF - c->len);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) return -1;
    if (r < 0) return 0;
    c->len += (size_t)r;
    char out[BUF * 4];
    size_t out_len = 0, start = 0;
    for (size_t i = 0; i < c->len; i++) {
        if (c->in[i] != '?') continue;
        while (start < i && strchr(" \t\r\n", c->in[start])) start++;
        const char *a = answer(c->in + start, i + 1 - start);
        size_t an = strlen(a);
        memcpy(out + out_len, a, an);
        out_len += an;
        start = i + 1;
        if (out_len > sizeof out - sizeof UNKNOWN) {
            if (write_all(fd, out, out_len) < 0) return -1;
            out_len = 0;
        }
    }
    memmove(c->in, c->in + start, c->len - start);
    c->len -= start;
    if (c->len == BUF) return -1; /* a question longer than the buffer */
    return out_len > 0 ? write_all(fd, out, out_len) : 0;
}

int main(int argc, char **argv) {
    int port = 1060;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-p") == 0 && i + 1 < argc) port = atoi(argv[++i]);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 4096) < 0) {
        perror("epoll-floor: cannot listen");
        return 1;
    }
    socklen_t alen = sizeof addr;
    getsockname(lfd, (struct sockaddr *)&addr, &alen);
    printf("listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
    fflush(stdout);

    int ep = epoll_create1(0);
    /* Level-triggered, as srv-poll by default: no re-arm per event. The
     * listener's key is NULL; a connection's is its state. */
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, events, MAX_EVENTS, -1);
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == NULL) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *c = calloc(1, sizeof *c);
                    c->fd = fd;
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            struct conn *c = events[i].data.ptr;
            if (serve(c->fd, c) < 0) {
                close(c->fd); /* closing removes it from the epoll set */
                free(c);
            }
        }
    }
}
