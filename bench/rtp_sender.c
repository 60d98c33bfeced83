/* Load generator for the capacity benchmark: paced G.711 RTP to many ports.
 *
 * Reads destination ports (one per line: "HOST PORT") from stdin, then sends one 172-byte
 * RTP packet (20 ms of PCMU) to each every 20 ms for SECONDS, with sendmmsg in batches,
 * each stream with its own SSRC, sequence and timestamp.  The payload is a 1 kHz tone so a
 * recording can be checked.  Prints one JSON line with packets sent, CPU used, the wall time
 * of the sending and how late the latest 20 ms tick started (a sender that cannot keep its
 * pace shows it there: its achieved rate, sent / wall_s, falls below the offered one).
 *
 * With --replay FILE it sends prepared packets instead (for SRTP, which this program cannot
 * encrypt, and for codecs other than PCMU, which it cannot encode): FILE holds, per tick,
 * one packet per destination, in the order of the destinations.  Layout (little-endian): the 8 bytes "SRSRPLY1", uint32 streams,
 * uint32 ticks, uint32 slot bytes, then ticks x streams slots, each a uint16 packet length
 * and the packet, padded to the slot size.  It sends min(SECONDS x 50, ticks) ticks, with
 * the same pacing and batching as the default mode.
 *
 * Build: gcc -O2 -o rtp_sender rtp_sender.c -lm
 * Usage: rtp_sender SECONDS [--replay FILE] < destinations
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
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

/* The replay file, mapped read-only (see the header comment for its layout). */
struct replay {
    const uint8_t *slots;
    uint32_t streams, ticks, slot;
};

static int open_replay(const char *path, struct replay *r) {
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < 20) {
        fprintf(stderr, "replay %s: cannot open or too short\n", path);
        return -1;
    }
    const uint8_t *map = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED || memcmp(map, "SRSRPLY1", 8) != 0) {
        fprintf(stderr, "replay %s: not a replay file\n", path);
        return -1;
    }
    memcpy(&r->streams, map + 8, 4);
    memcpy(&r->ticks, map + 12, 4);
    memcpy(&r->slot, map + 16, 4);
    if (r->slot < 3 || 20 + (uint64_t)r->streams * r->ticks * r->slot > (uint64_t)st.st_size) {
        fprintf(stderr, "replay %s: truncated\n", path);
        return -1;
    }
    r->slots = map + 20;
    return 0;
}

int main(int argc, char **argv) {
    struct replay replay = {0};
    int replaying = argc == 4 && strcmp(argv[2], "--replay") == 0;
    if (argc != 2 && !replaying) {
        fprintf(stderr, "usage: %s SECONDS [--replay FILE] < destinations\n", argv[0]);
        return 2;
    }
    if (replaying && open_replay(argv[3], &replay) != 0) return 2;
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
    if (replaying && replay.streams != (uint32_t)streams) {
        fprintf(stderr, "replay file has %u streams, %d destinations given\n", replay.streams,
                streams);
        return 2;
    }
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
    double start = now_s(), late_max = 0;
    for (uint32_t tick = 0;; tick++) {
        double due = start + tick * 0.020;
        if (due - start >= seconds || (replaying && tick >= replay.ticks)) break;
        double wait = due - now_s();
        if (-wait > late_max) late_max = -wait;
        if (wait > 0) {
            struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
            nanosleep(&ts, NULL);
        }
        for (int s = 0; s < streams; s += BATCH) {
            int n = streams - s < BATCH ? streams - s : BATCH;
            for (int k = 0; k < n; k++) {
                if (replaying) {
                    const uint8_t *slot =
                        replay.slots + ((uint64_t)tick * streams + s + k) * replay.slot;
                    iovs[k].iov_base = (void *)(slot + 2);
                    iovs[k].iov_len = slot[0] | slot[1] << 8;
                } else {
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
                }
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
    double wall = now_s() - start;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;
    printf("{\"sent\": %llu, \"streams\": %d, \"cpu_s\": %.6f, \"wall_s\": %.6f, "
           "\"late_max_s\": %.6f}\n", sent, streams, cpu, wall, late_max);
    return 0;
}
