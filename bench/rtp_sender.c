/* Load generator for the capacity benchmark: paced G.711 RTP to many ports.
 *
 * Reads destination ports (one per line: "HOST PORT") from stdin, then sends one 172-byte
 * RTP packet (20 ms of PCMU) to each every 20 ms for SECONDS, with sendmmsg in batches,
 * each stream with its own SSRC, sequence and timestamp.  The payload is a 1 kHz tone so a
 * recording can be checked.  Prints one JSON line with packets sent and CPU used.
 *
 * Build: gcc -O2 -o rtp_sender rtp_sender.c -lm
 * Usage: rtp_sender SECONDS < destinations
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_STREAMS 8192
#define PAYLOAD 160
#define BATCH 256

static uint8_t ulaw_encode(int16_t pcm) {
    const int BIAS = 0x84, CLIP = 32635;
    int sign = (pcm >> 8) & 0x80;
    int sample = sign ? -pcm : pcm;
    if (sample > CLIP) sample = CLIP;
    sample += BIAS;
    int exponent = 7;
    for (int mask = 0x4000; (sample & mask) == 0 && exponent > 0; mask >>= 1) exponent--;
    int mantissa = (sample >> (exponent + 3)) & 0x0F;
    return (uint8_t)~(sign | (exponent << 4) | mantissa);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s SECONDS < destinations\n", argv[0]);
        return 2;
    }
    double seconds = atof(argv[1]);
    static struct sockaddr_in dest[MAX_STREAMS];
    int streams = 0;
    char host[64];
    int port;
    while (streams < MAX_STREAMS && scanf("%63s %d", host, &port) == 2) {
        dest[streams].sin_family = AF_INET;
        dest[streams].sin_port = htons(port);
        inet_pton(AF_INET, host, &dest[streams].sin_addr);
        streams++;
    }
    if (streams == 0) return 2;
    uint8_t tone[8 * PAYLOAD];  /* 8 packets of a 1 kHz tone = whole periods */
    for (int i = 0; i < 8 * PAYLOAD; i++)
        tone[i] = ulaw_encode((int16_t)(8000 * sin(2 * M_PI * 1000 * i / 8000.0)));
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int sndbuf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    static uint8_t packets[MAX_STREAMS][12 + PAYLOAD];
    static struct mmsghdr msgs[BATCH];
    static struct iovec iovs[BATCH];
    unsigned long long sent = 0;
    double start = now_s();
    for (uint32_t tick = 0;; tick++) {
        double due = start + tick * 0.020;
        if (due - start >= seconds) break;
        double wait = due - now_s();
        if (wait > 0) {
            struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
            nanosleep(&ts, NULL);
        }
        for (int s = 0; s < streams; s += BATCH) {
            int n = streams - s < BATCH ? streams - s : BATCH;
            for (int k = 0; k < n; k++) {
                uint8_t *p = packets[s + k];
                uint16_t seq = (uint16_t)tick;
                uint32_t ts = tick * PAYLOAD, ssrc = 0x10000000u + s + k;
                p[0] = 0x80; p[1] = 0;  /* V=2, PT 0 (PCMU) */
                p[2] = seq >> 8; p[3] = seq & 0xff;
                p[4] = ts >> 24; p[5] = ts >> 16; p[6] = ts >> 8; p[7] = ts;
                p[8] = ssrc >> 24; p[9] = ssrc >> 16; p[10] = ssrc >> 8; p[11] = ssrc;
                memcpy(p + 12, tone + (tick % 8) * PAYLOAD, PAYLOAD);
                iovs[k].iov_base = p;
                iovs[k].iov_len = 12 + PAYLOAD;
                memset(&msgs[k].msg_hdr, 0, sizeof msgs[k].msg_hdr);
                msgs[k].msg_hdr.msg_name = &dest[s + k];
                msgs[k].msg_hdr.msg_namelen = sizeof dest[s + k];
                msgs[k].msg_hdr.msg_iov = &iovs[k];
                msgs[k].msg_hdr.msg_iovlen = 1;
            }
            int done = 0;
            while (done < n) {
                int r = sendmmsg(fd, msgs + done, n - done, 0);
                if (r <= 0) break;
                done += r;
            }
            sent += done;
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;
    printf("{\"sent\": %llu, \"streams\": %d, \"cpu_s\": %.6f}\n", sent, streams, cpu);
    return 0;
}
