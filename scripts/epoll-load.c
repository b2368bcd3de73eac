/*
 * epoll-load: a minimal closed-loop load generator in C, the yardstick for
 * `client load` (docs/targets.md: the load generator must reach at least 0.9
 * times the rate of an independent epoll generator against the same
 * server).
 *
 * One thread, one epoll, CONNS connections with one request in flight
 * each: send REQUEST, read until EXPECT has arrived in full (checked byte
 * for byte), send again. Prints the replies per second after SECONDS.
 *
 *   cc -O2 -o epoll-load epoll-load.c
 *   ./epoll-load 127.0.0.1 1060 50 5 'Beautiful is better than?' 'ugly.'
 *
 * REQUEST and EXPECT take \r and \n escapes (for redis: 'PING\r\n' '+PONG\r\n').
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static size_t unescape(char *s) {
    char *out = s;
    for (char *in = s; *in; in++) {
        if (in[0] == '\\' && in[1] == 'r') { *out++ = '\r'; in++; }
        else if (in[0] == '\\' && in[1] == 'n') { *out++ = '\n'; in++; }
        else *out++ = *in;
    }
    return (size_t)(out - s);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s HOST PORT CONNS SECONDS REQUEST EXPECT\n", argv[0]);
        return 2;
    }
    int conns = atoi(argv[3]);
    double seconds = atof(argv[4]);
    char *request = argv[5], *expect = argv[6];
    size_t request_len = unescape(request), expect_len = unescape(expect);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (conns < 1 || expect_len == 0 || inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) {
        fprintf(stderr, "epoll-load: bad arguments\n");
        return 2;
    }
    int ep = epoll_create1(0);
    size_t *got = calloc(conns, sizeof *got);
    for (int i = 0; i < conns; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
            perror("epoll-load: connect");
            return 1;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = ((unsigned long long)fd << 32) | i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        if (write(fd, request, request_len) != (ssize_t)request_len) {
            perror("epoll-load: write");
            return 1;
        }
    }
    unsigned long long replies = 0;
    char buf[65536];
    struct epoll_event events[256];
    double start = now(), deadline = start + seconds;
    while (now() < deadline) {
        int n = epoll_wait(ep, events, 256, 100);
        for (int e = 0; e < n; e++) {
            int fd = (int)(events[e].data.u64 >> 32), i = (int)(events[e].data.u64 & 0xffffffff);
            ssize_t r = read(fd, buf, sizeof buf);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) continue;
                fprintf(stderr, "epoll-load: connection %d closed\n", i);
                return 1;
            }
            for (ssize_t k = 0; k < r; k++) {
                if (buf[k] != expect[got[i]]) {
                    fprintf(stderr, "epoll-load: wrong reply\n");
                    return 1;
                }
                if (++got[i] == expect_len) {
                    got[i] = 0;
                    replies++;
                    if (write(fd, request, request_len) != (ssize_t)request_len) {
                        perror("epoll-load: write");
                        return 1;
                    }
                }
            }
        }
    }
    printf("%.1f\n", replies / (now() - start));
    return 0;
}
