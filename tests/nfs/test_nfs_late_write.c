// SPDX-License-Identifier: MIT
/*
 * A renewal held up on its way to the server lands after someone else has
 * taken the lease over. It must change nothing that matters.
 *
 * Stopping the whole server (test_nfs_pause.c) delays everyone, so the old
 * holder's stuck renewal lands before the waiter can even look again. Here
 * only the holder's connection stalls: it reaches the server through a small
 * TCP relay in a child process, which on the test's word stops reading from
 * the holder (requests pile up in the relay's socket buffer, as they would in
 * a congested network or a server thread that hangs) and later passes
 * everything on. The waiter, on its own connection, sees the record stay
 * still, waits out T*(1+rho) and claims the next generation; only then does
 * the relay let the old holder's renewal through, and the old generation's
 * counter moves on the server's disk, after the takeover. Then:
 *
 *  - the old holder had stepped down before the takeover (its deadline falls
 *    at least the margin earlier), and never sees its lease valid again:
 *    lk_lock_check() stays -ENOLCK and lk_lock_release() returns -ENOLCK;
 *  - the new holder keeps its lease for more than two TTLs (its renewals
 *    probe for the generation after its own, which the late write did not
 *    touch), status shows it, and no generation after its own appears.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "nharness.h"
#include "stall.h"

#define TTL_MS 2000
#define PAIRS  8

static long long ms(int64_t ns)
{
	return (long long)(ns / 1000000);
}

/* ------------------------------------------------------------------------
 * The relay: 127.0.0.1:<ephemeral> -> the server's NFS port. Messages from
 * the test: 1 hold (stop reading from clients), 0 pass (read again), each
 * answered with the same value once in force.
 */

static int write_all(int fd, const char *buf, ssize_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, buf, (size_t)n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		buf += w;
		n -= w;
	}
	return 0;
}

static int connect_server(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static void relay_child(int rx, int tx, void *arg)
{
	int target = *(const int *)arg, hold = 0, n = 0, one = 1;
	int cli[PAIRS], srv[PAIRS];
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHILD_ASSERT(ls >= 0);
	CHILD_EQ(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
	CHILD_EQ(listen(ls, 8), 0);
	CHILD_EQ(getsockname(ls, (struct sockaddr *)&sa, &len), 0);
	nh_send(tx, ntohs(sa.sin_port));

	for (;;) {
		struct pollfd p[2 + 2 * PAIRS];
		char buf[65536];
		int np = 0;

		p[np++] = (struct pollfd){.fd = rx, .events = POLLIN};
		p[np++] = (struct pollfd){.fd = ls, .events = POLLIN};
		for (int i = 0; i < n; i++) {
			/* held: leave what the client sends in our receive buffer */
			p[np++] = (struct pollfd){.fd = hold ? -1 : cli[i], .events = POLLIN};
			p[np++] = (struct pollfd){.fd = srv[i], .events = POLLIN};
		}
		if (poll(p, (nfds_t)np, -1) < 0)
			continue;
		if (p[0].revents) {
			uint64_t m;

			if (nh_recv(rx, &m, NH_SAFETY_MS) < 0)
				return; /* the test is gone */
			hold = m == 1;
			nh_send(tx, m);
			continue;
		}
		if (p[1].revents && n < PAIRS) {
			int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC), s = -1;

			if (c >= 0)
				s = connect_server(target);
			if (s >= 0) {
				setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
				cli[n] = c;
				srv[n] = s;
				n++;
			} else if (c >= 0) {
				close(c);
			}
			continue;
		}
		for (int i = 0; i < n; i++) {
			struct pollfd *pc = &p[2 + 2 * i], *ps = &p[3 + 2 * i];
			ssize_t r = 0;
			int dead = 0;

			if (pc->fd >= 0 && pc->revents) {
				r = read(cli[i], buf, sizeof(buf));
				dead = r <= 0 || write_all(srv[i], buf, r) < 0;
			}
			if (!dead && ps->revents) {
				r = read(srv[i], buf, sizeof(buf));
				dead = r <= 0 || write_all(cli[i], buf, r) < 0;
			}
			if (dead) {
				close(cli[i]);
				close(srv[i]);
				cli[i] = cli[n - 1];
				srv[i] = srv[n - 1];
				n--;
				break; /* the poll set no longer matches */
			}
		}
	}
}

static void relay_set(struct nh_child *r, uint64_t hold)
{
	nh_send(r->tx, hold);
	assert_int_equal(nh_expect(r->rx, NH_SAFETY_MS), hold);
}

/* ------------------------------------------------------------------------ */

static void test_late_renewal_lands_after_takeover(void **state)
{
	char local[PATH_MAX], rel[PATH_MAX], sub[PATH_MAX + 16], lockdir[PATH_MAX + 32];
	char url[PATH_MAX + 512], url_relay[PATH_MAX + 512], query[512], port[16];
	struct stall_shared *sh = nh_shared(sizeof(*sh));
	struct stall_args ha, wa;
	struct nh_child relay, h, w;
	struct lk__lrec rec_held, rec, next;
	struct lk_store *st;
	struct lk_status s = {.size = sizeof(s)};
	uint64_t tok_h, tok_w;
	int64_t t_hold, t_acq, t_pass, t_landed = 0, dl, lost_at, end;
	int server_port = nh_nfs_port(), want = nh_engine_code(nh_engine_expected());

	(void)state;
	memset(sh, 0, sizeof(*sh));
	nh_scratch("late", local, sizeof(local), rel, sizeof(rel));
	snprintf(sub, sizeof(sub), "%s/store", rel);
	snprintf(lockdir, sizeof(lockdir), "%s/store/stall", local);
	nh_url(url, sizeof(url), sub, NULL);

	nh_spawn(&relay, relay_child, &server_port);
	snprintf(port, sizeof(port), "%d", (int)nh_expect(relay.rx, NH_SAFETY_MS));
	nh_query_with(query, sizeof(query), "nfsport", port);
	nh_url(url_relay, sizeof(url_relay), sub, query);

	ha = (struct stall_args){.url = url_relay, .ttl_ms = TTL_MS, .foreign = 0, .sh = sh};
	wa = (struct stall_args){.url = url, .ttl_ms = TTL_MS, .foreign = 1, .sh = sh};
	nh_spawn(&h, stall_holder, &ha);
	tok_h = nh_expect(h.rx, NH_SAFETY_MS);
	assert_int_equal(nh_expect(h.rx, NH_SAFETY_MS), want);
	nh_spawn(&w, stall_waiter, &wa);
	nh_expect(w.rx, NH_SAFETY_MS);
	nh_sleep_ms(700);

	/* cut the holder off; renewals it sends from now on wait in the relay */
	t_hold = nh_boot_ns();
	relay_set(&relay, 1);
	nh_sleep_ms(50); /* a renewal on the wire when the relay stopped lands first */
	assert_int_equal(nh_read_gen(lockdir, tok_h, &rec_held), 0);
	assert_int_equal(rec_held.state, LK_LSTATE_HELD);

	t_acq = (int64_t)nh_expect(w.rx, 2 * NH_SAFETY_MS);
	tok_w = nh_expect(w.rx, NH_SAFETY_MS);
	assert_int_equal(nh_expect(w.rx, NH_SAFETY_MS), want);
	nh_send(w.tx, 5 * TTL_MS / 2);
	assert_int_equal(atomic_load(&sh->errors), 0); /* its server never stalled */
	if (tok_w <= tok_h)
		fail_msg("the waiter's token %llu is not above %llu", (unsigned long long)tok_w,
		         (unsigned long long)tok_h);

	/* the old holder stepped down the margin before the takeover */
	lost_at = atomic_load(&sh->lost_at);
	dl = atomic_load(&sh->deadline);
	assert_int_equal(atomic_load(&sh->lost_reason), -ETIMEDOUT);
	if (!lost_at || lost_at >= t_acq)
		fail_msg("the old holder's on_lost had not run when the waiter took over");
	if (t_acq - dl < 100 * 1000000LL)
		fail_msg("takeover %lld ms after the old holder's deadline: less than the margin",
		         ms(t_acq - dl));

	/* its renewal is still held back; now let it through */
	assert_int_equal(nh_read_gen(lockdir, tok_h, &rec), 0);
	if (rec.counter != rec_held.counter)
		fail_msg("the old generation changed while the holder was cut off");
	t_pass = nh_boot_ns();
	relay_set(&relay, 0);
	end = nh_boot_ns() + 5000 * 1000000LL;
	while (nh_boot_ns() < end) {
		if (nh_read_gen(lockdir, tok_h, &rec) == 0 && rec.counter != rec_held.counter) {
			t_landed = nh_boot_ns();
			break;
		}
		nh_sleep_ms(2);
	}
	print_message("holder cut off; on_lost %lld ms later, takeover %lld ms later (%lld ms "
	              "after the deadline); its held-back renewal landed %lld ms after the "
	              "takeover (counter %llu -> %llu); token %llu -> %llu\n",
	              ms(lost_at - t_hold), ms(t_acq - t_hold), ms(t_acq - dl),
	              t_landed ? ms(t_landed - t_acq) : -1LL, (unsigned long long)rec_held.counter,
	              (unsigned long long)rec.counter, (unsigned long long)tok_h,
	              (unsigned long long)tok_w);
	if (!t_landed)
		fail_msg("the old holder's held-back renewal never reached the server: the "
		         "scenario this test is about did not happen");
	assert_true(t_landed > t_acq && t_pass > t_acq);
	assert_int_equal(rec.gen, tok_h);
	assert_int_equal(rec.state, LK_LSTATE_HELD);

	/* the old holder stays lost */
	nh_sleep_ms(TTL_MS / 2);
	nh_send(h.tx, 1);
	assert_int_equal((int64_t)nh_expect(h.rx, NH_SAFETY_MS), -ENOLCK);
	assert_int_equal((int64_t)nh_expect(h.rx, NH_SAFETY_MS), -ENOLCK);
	assert_int_equal(nh_expect(h.rx, NH_SAFETY_MS), 0);
	assert_int_equal(nh_reap(&h, NH_SAFETY_MS), 0);
	assert_int_equal(atomic_load(&sh->lost_calls), 1);
	assert_int_equal(atomic_load(&sh->valid_after_lost), 0);
	assert_int_equal(atomic_load(&sh->valid_after_deadline), 0);

	/* the new holder keeps its lease and is the one everybody sees */
	st = nh_store_open(url);
	assert_int_equal(lk_lock_status(st, "stall", &s), 0);
	assert_true(s.held);
	assert_int_equal(s.token, tok_w);
	assert_int_equal(s.holder.pid, w.pid);
	lk_store_close(st);
	assert_int_equal(nh_expect(w.rx, 2 * NH_SAFETY_MS), 0); /* checks that failed */
	assert_int_equal((int64_t)nh_expect(w.rx, NH_SAFETY_MS), 0);
	assert_int_equal((int64_t)nh_expect(w.rx, NH_SAFETY_MS), 0);
	assert_int_equal(nh_reap(&w, NH_SAFETY_MS), 0);
	assert_int_equal(nh_read_gen(lockdir, tok_w + 1, &next), -ENOENT);
	assert_int_equal(nh_read_gen(lockdir, tok_w, &rec), 0);
	assert_int_equal(rec.state, LK_LSTATE_RELEASED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_late_renewal_lands_after_takeover, nh_teardown),
	};

	nh_init(100);
	return cmocka_run_group_tests_name("nfs_late_write", tests, NULL, NULL);
}
