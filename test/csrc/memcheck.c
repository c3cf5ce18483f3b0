/*
 * memcheck: the integration tests' memory workload. It allocates N MiB
 * (argv[1]) and fills every page from its index, then keeps rewriting one
 * page every 10 ms (a generation word at the start of the page, mirrored in
 * a separate table) while it listens on TCP port 7000. Each connection gets
 * "ok COUNTER PAGES\n" after every page was checked against its index and
 * generation, or "bad PAGE COUNTER\n" at the first page that differs: a
 * restore that lost, mixed up or zeroed memory shows, and COUNTER (the
 * rewrites so far) shows that the process carried on from its state.
 */
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PAGE 4096
#define WORDS (PAGE / 8)

static uint64_t word(uint64_t page, uint64_t i)
{
	uint64_t x = (page + 1) * 0x9E3779B97F4A7C15ULL + i;

	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return x;
}

int main(int argc, char **argv)
{
	size_t npages = (size_t)atol(argc > 1 ? argv[1] : "64") * 256;
	uint64_t *mem = malloc(npages * PAGE), *gen = calloc(npages, 8), counter = 0;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(7000) };
	int one = 1, ls;

	if (!mem || !gen)
		return 1;
	for (size_t p = 0; p < npages; p++) {
		mem[p * WORDS] = 0;
		for (size_t i = 1; i < WORDS; i++)
			mem[p * WORDS + i] = word(p, i);
	}
	ls = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) || listen(ls, 16))
		return 2;
	for (;;) {
		struct pollfd pfd = { .fd = ls, .events = POLLIN };
		char out[64];
		size_t p, i, bad = npages;
		int c;

		if (poll(&pfd, 1, 10) <= 0) {
			p = counter % npages;
			counter++;
			gen[p] = counter;
			mem[p * WORDS] = counter;
			continue;
		}
		c = accept(ls, NULL, NULL);
		if (c < 0)
			continue;
		for (p = 0; p < npages && bad == npages; p++) {
			if (mem[p * WORDS] != gen[p])
				bad = p;
			for (i = 1; i < WORDS && bad == npages; i++)
				if (mem[p * WORDS + i] != word(p, i))
					bad = p;
		}
		if (bad == npages)
			snprintf(out, sizeof(out), "ok %llu %zu\n", (unsigned long long)counter, npages);
		else
			snprintf(out, sizeof(out), "bad %zu %llu\n", bad, (unsigned long long)counter);
		if (write(c, out, strlen(out)) < 0)
			perror("write");
		close(c);
	}
}
