/* The floor of the capacity benchmark: the least a receiver can do per RTP packet.
 *
 * Binds N UDP ports (BASE, BASE+2, ...), drains them with epoll + recvmmsg, counts packets
 * and bytes, and on SIGTERM/SIGINT (or after --seconds) prints one JSON line with the
 * packets received and the CPU time it used (getrusage), so the benchmark can quote the
 * floor's CPU microseconds per packet beside srs's.
 *
 * Build: gcc -O2 -o floor_receiver floor_receiver.c
 * Usage: floor_receiver HOST BASE_PORT COUNT SECONDS
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAX_PACKET 2048

static volatile sig_atomic_t stop_flag = 0;
static void on_signal(int sig) { (void)sig; stop_flag = 1; }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s HOST BASE_PORT COUNT SECONDS\n", argv[0]);
        return 2;
    }
    const char *host = argv[1];
    int base = atoi(argv[2]), count = atoi(argv[3]);
    double seconds = atof(argv[4]);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    int ep = epoll_create1(0);
    for (int i = 0; i < count; i++) {
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        int rcvbuf = 1 << 20;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
        struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(base + 2 * i)};
        inet_pton(AF_INET, host, &addr.sin_addr);
        if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
            fprintf(stderr, "bind %d: %s\n", base + 2 * i, strerror(errno));
            return 1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    printf("{\"ready\": true}\n");
    fflush(stdout);
    static char bufs[BATCH][MAX_PACKET];
    struct mmsghdr msgs[BATCH];
    struct iovec iovs[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iovs[i].iov_base = bufs[i];
        iovs[i].iov_len = MAX_PACKET;
        memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    unsigned long long packets = 0, bytes = 0;
    double deadline = now_s() + seconds;
    struct epoll_event events[256];
    while (!stop_flag && now_s() < deadline) {
        int n = epoll_wait(ep, events, 256, 100);
        for (int e = 0; e < n; e++) {
            int got;
            while ((got = recvmmsg(events[e].data.fd, msgs, BATCH, MSG_DONTWAIT, NULL)) > 0) {
                packets += got;
                for (int k = 0; k < got; k++) bytes += msgs[k].msg_len;
            }
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;
    printf("{\"packets\": %llu, \"bytes\": %llu, \"cpu_s\": %.6f}\n", packets, bytes, cpu);
    return 0;
}
