/*
 * memhog: the benchmark's workload. It allocates N MiB (argv[1]), fills the
 * first half with incompressible bytes (xorshift64) and the second half with
 * compressible text lines carrying a counter, so every page is touched, then
 * listens on TCP port 7000 on all addresses and answers every connection
 * with "ok N\n". It runs until killed.
 *
 * bench/workload.go generates the same bytes in Go (dataMix) for the
 * machine's compression limits: keep the two in step ("memhog N --print"
 * writes the filled memory to stdout and exits; a unit test compares).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PORT 7000
#define SEED 0x9E3779B97F4A7C15ULL

/* sink keeps the filled memory observable, so the compiler keeps the fill. */
volatile uint64_t sink;

static void fill_random(unsigned char *p, size_t n)
{
	uint64_t x = SEED;
	size_t i;

	for (i = 0; i + 8 <= n; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(p + i, &x, 8); /* little-endian on x86-64, as dataMix */
	}
	for (; i < n; i++)
		p[i] = (unsigned char)i;
}

/* fill_text writes "line 0000000001 of the crtool benchmark: the quick brown
 * fox jumps over the lazy dog\n" with a running counter, cut at n bytes. */
static void fill_text(unsigned char *p, size_t n)
{
	static const char tail[] = " of the crtool benchmark: the quick brown fox jumps over the lazy dog\n";
	char line[128];
	uint64_t counter = 0;
	size_t off = 0;

	while (off < n) {
		size_t len = 0, k;
		char digits[10];
		uint64_t c = ++counter;

		for (k = 0; k < 10; k++) {
			digits[9 - k] = (char)('0' + c % 10);
			c /= 10;
		}
		memcpy(line, "line ", 5);
		len = 5;
		memcpy(line + len, digits, 10);
		len += 10;
		memcpy(line + len, tail, sizeof(tail) - 1);
		len += sizeof(tail) - 1;
		if (len > n - off)
			len = n - off;
		memcpy(p + off, line, len);
		off += len;
	}
}

static int listen_any(void)
{
	struct sockaddr_in6 a6;
	struct sockaddr_in a4;
	int one = 1, zero = 0, fd;

	fd = socket(AF_INET6, SOCK_STREAM, 0);
	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
		memset(&a6, 0, sizeof(a6));
		a6.sin6_family = AF_INET6;
		a6.sin6_addr = in6addr_any;
		a6.sin6_port = htons(PORT);
		if (bind(fd, (struct sockaddr *)&a6, sizeof(a6)) == 0 && listen(fd, 64) == 0)
			return fd;
		close(fd);
	}
	/* No IPv6 in this namespace: IPv4 only. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&a4, 0, sizeof(a4));
	a4.sin_family = AF_INET;
	a4.sin_addr.s_addr = htonl(INADDR_ANY);
	a4.sin_port = htons(PORT);
	if (bind(fd, (struct sockaddr *)&a4, sizeof(a4)) != 0 || listen(fd, 64) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int main(int argc, char **argv)
{
	long mib = argc > 1 ? atol(argv[1]) : 64;
	size_t size, half, i;
	unsigned char *buf;
	uint64_t sum = 0;
	char reply[32];
	int lfd, rlen;

	if (mib <= 0) {
		fprintf(stderr, "memhog: bad size %s (MiB)\n", argv[1]);
		return 2;
	}
	size = (size_t)mib << 20;
	buf = malloc(size);
	if (buf == NULL) {
		fprintf(stderr, "memhog: cannot allocate %ld MiB\n", mib);
		return 1;
	}
	half = size / 2;
	fill_random(buf, half);
	fill_text(buf + half, size - half);
	for (i = 0; i < size; i += 4096)
		sum += buf[i];
	sink = sum;
	if (argc > 2 && strcmp(argv[2], "--print") == 0)
		return fwrite(buf, 1, size, stdout) == size ? 0 : 1;

	signal(SIGPIPE, SIG_IGN);
	lfd = listen_any();
	if (lfd < 0) {
		perror("memhog: listen on port 7000");
		return 1;
	}
	rlen = snprintf(reply, sizeof(reply), "ok %ld\n", mib);
	for (;;) {
		int c = accept(lfd, NULL, NULL);
		if (c < 0)
			continue;
		(void)!write(c, reply, (size_t)rlen);
		close(c);
	}
}
