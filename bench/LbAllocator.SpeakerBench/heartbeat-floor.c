/* The heartbeat's floor without .NET (a baseline row of `footprint`): send a 60-byte broadcast frame on the named
   interface every 100 ms, on an absolute clock, as the speaker's heartbeat thread does, and nothing else. EtherType
   0x88B6, which no speaker captures. */
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

int main(int argc, char **argv)
{
    if (argc != 2) { fprintf(stderr, "usage: heartbeat-floor INTERFACE\n"); return 2; }
    int s = socket(AF_PACKET, SOCK_RAW, htons(0x88B6));
    struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_ifindex = (int)if_nametoindex(argv[1]), .sll_halen = 6 };
    if (s < 0 || to.sll_ifindex == 0) { perror(argv[1]); return 1; }
    memset(to.sll_addr, 0xff, 6);
    unsigned char frame[60] = { 0 };
    memset(frame, 0xff, 6);
    frame[6] = 0x02;
    frame[12] = 0x88;
    frame[13] = 0xb6;
    printf("open\n");
    fflush(stdout);
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (;;)
    {
        next.tv_nsec += 100000000;
        if (next.tv_nsec >= 1000000000) { next.tv_nsec -= 1000000000; next.tv_sec++; }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
        if (sendto(s, frame, sizeof frame, 0, (struct sockaddr *)&to, sizeof to) < 0) { perror("sendto"); return 1; }
    }
}
