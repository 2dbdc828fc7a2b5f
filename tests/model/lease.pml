/* SPDX-License-Identifier: MIT */
/*
 * A model of the lease protocol of docs/protocol.md, Part II (sections 15
 * to 20, implemented in src/lease.c and src/engine.c), for the spin model
 * checker. tools/model-check.sh runs it; docs/protocol.md, section 23.4,
 * says what it covers and what it leaves out.
 *
 * Three participants loop: observe the newest generation, judge it free,
 * claim the next generation by link, check the claim, then hold it: enter
 * and leave a critical section (only after lk_lock_check() passes), renew,
 * release, or find the lease lost; then observe again. The storage answers
 * every request at a moment of its choosing between the request being sent
 * and its reply arriving, so a request can wait in a stalled server for as
 * long as time is allowed to run, and a write can be applied long after it
 * was sent. Any participant can stop taking steps at any point for any
 * number of clock ticks (a paused process) while its clock keeps counting,
 * as CLOCK_BOOTTIME does; when it resumes, it goes on from where it was.
 *
 * Time. Real time is a count of ticks of the clock process; between two
 * ticks any number of steps may happen, and a paused participant lets
 * ticks go by. At each tick every participant's own clock advances by its
 * rate, RSLOW or RFAST units, chosen once per participant. Every real
 * interval holds the same number of ticks for everyone, so any interval one
 * clock measures as d is measured by another as between d*RSLOW/RFAST and
 * d*RFAST/RSLOW: with rates 3 and 4 that is within [d(1 - rho), d(1 + rho)]
 * for rho = 1/3, the bound of section 13. Each duration the protocol
 * measures is a countdown in its owner's clock units, started where the
 * protocol reads its clock (t_submit, t_arrived) and stopped at 0. Clock
 * offsets do not exist here, as they do not matter to the protocol: no one
 * compares times taken on different clocks.
 *
 * Storage. The lock directory holds g.0 .. g.top, all of them (clean-up is
 * not modelled); g.0 is the RELEASED first generation. A record is (state,
 * counter); the nonce is implied, since a claim is the only write that
 * creates a record and each generation is created once. The link of a claim
 * is one atomic step that creates g.N+1 only if it does not exist.
 *
 * What is checked, by assertions:
 *  - mutual exclusion: at no moment do two participants both hold with
 *    their deadline not yet passed, i.e. both would pass lk_lock_check().
 *    This is asserted at the only two steps that give a participant a
 *    deadline ahead (a claim that completes, a renewal that counts), and
 *    again on entering the critical section: no other participant is in it
 *    with its check still passing;
 *  - tokens: each successful claim's token (its generation) is above every
 *    token handed out before, and each critical section is entered with a
 *    token above every token used in one before, or equal to it when the
 *    same hold entered last.
 *
 * Deliberately broken variants, selected with -D, must each make spin find
 * an assertion violation (tools/model-check.sh fails if one does not):
 *  BROKEN_NO_CHECK        a holder enters the critical section without
 *                         calling lk_lock_check(): after a pause it acts on
 *                         a lease that others have taken over
 *  BROKEN_RHO             both sides ignore rho: the holder keeps T - margin,
 *                         the observer waits T
 *  BROKEN_LATE_RENEWAL    a renewal counts whenever its reply comes, even
 *                         after the deadline (the holder rule of section 18
 *                         dropped): a renewal delayed in the server revives
 *                         a lease an observer has already taken over
 *  BROKEN_FIRST_SEEN_SENT first seen is when the read was sent, not when its
 *                         reply arrived (the observer rule's arrival end)
 *  BROKEN_CLAIM_REPLACE   a claim replaces g.N+1 if it exists (a rename, not
 *                         a link): two claimants both win a generation
 * Reachability checks, not bugs: each asserts that something never happens
 * which the model must be able to do, so that a clean run of the real model
 * is not clean merely because it never gets that far:
 *  REACH_TAKEOVER         a HELD lease is taken over after waiting it out
 *  REACH_LATE_RENEWAL     a renewal's reply arrives after the deadline
 */

#define NP 3        /* participants */
#ifndef MAXG
#define MAXG 2      /* generations 1..MAXG can be claimed; g.0 is the seed */
#endif
#ifndef MAXREN
#define MAXREN 1    /* renewals per hold, besides the claim (keeps states finite) */
#endif

/*
 * Clock rates 3 and 4 units per tick: rho = 1/3. T = 12 units. The holder's
 * deadline is T(1 - rho) - margin = 7 units after t_submit, which is 2 or 3
 * ticks; the observer waits T(1 + rho) = 16 units after first seen, 4 to 6
 * ticks. The numbers are as small as keeps every broken variant above
 * visible: with the late-renewal bug a renewal sent just before the
 * deadline must reach beyond the observer's wait, which needs the wait
 * shorter than two holder deadlines.
 */
#define RSLOW 3
#define RFAST 4
#define T 12
#define MARGIN 1

#ifdef BROKEN_RHO
#define DH (T - MARGIN)
#define DO T
#else
#define DH (T * 2 / 3 - MARGIN)
#define DO (T * 4 / 3)
#endif

#ifdef BROKEN_NO_CHECK
#define CHECK_PASSES(p) true
#else
#define CHECK_PASSES(p) (dl[p] > 0)   /* lk_lock_check(): the deadline is ahead */
#endif

#define HELD 1
#define RELEASED 2
#define ABORTED 4

/* The storage: the newest generation, and every generation's record. */
byte top = 0;
byte rstate[MAXG + 1];
byte rctr[MAXG + 1];

/* Per participant; the countdowns are in the participant's clock units. */
byte rate[NP];
byte dl[NP];     /* time left to the deadline: of the hold, or of the
                  * claim in progress (which counts as renewal 0) */
byte pend[NP];   /* holder: time left from the t_submit of the renewal in flight */
byte ow[NP];     /* observer: time left until a confirming read may be sent */
byte sow[NP];    /* observer (BROKEN_FIRST_SEEN_SENT): the same, from the send */
bool hold[NP];   /* holds (lk_lock_acquire() returned 0, not yet released or lost) */
bool cs[NP];     /* in the critical section */

/* The witnesses of the token property. */
byte last_token = 0;   /* highest token a claim handed out */
byte cs_token = 0;     /* highest token used in a critical section */
byte cs_who = NP;      /* who used it */

inline dec(v)
{
	if
	:: v > rate[i] -> v = v - rate[i]
	:: else -> v = 0
	fi
}

active proctype clock()
{
	byte i;

	do
	:: d_step {
		i = 0;
		do
		:: i < NP ->
			dec(dl[i]); dec(pend[i]); dec(ow[i]); dec(sow[i]);
			i++
		:: else -> break
		od;
		i = 0
	   }
	od
}

/* Nobody else holds with its deadline ahead. */
inline check_alone()
{
	j = 0;
	do
	:: j < NP -> assert(j == p || !hold[j] || dl[j] == 0); j++
	:: else -> break
	od;
	j = 0
}

/* Nobody else is in the critical section with its check still passing. */
inline check_cs_alone()
{
	j = 0;
	do
	:: j < NP -> assert(j == p || !cs[j] || dl[j] == 0); j++
	:: else -> break
	od;
	j = 0
}

proctype participant(byte p)
{
	byte j;
	/* the newest record as this observer remembers it */
	bool seen = false;
	byte sg, sc, ss;
	/* the read in flight: sent late enough to confirm expiry; its reply */
	bool late;
	byte rg, rc, rs;
	/* the hold */
	byte g, ctr, nren;
	bool newer;

observe:
	/* send a read; it confirms expiry only if sent T(1 + rho) after first seen */
	atomic {
		late = seen && ow[p] == 0;
#ifdef BROKEN_FIRST_SEEN_SENT
		sow[p] = DO;
#endif
	}
	/* the storage answers it at a moment of its choosing */
	atomic { rg = top; rc = rctr[rg]; rs = rstate[rg] }
	/* the reply arrives: judge (section 16) */
	atomic {
		if
		:: seen && rg == sg && rc == sc && rs == ss
		:: else ->
			/* anything else restarts first seen, at the arrival */
			seen = true; sg = rg; sc = rc; ss = rs; late = false;
#ifdef BROKEN_FIRST_SEEN_SENT
			ow[p] = sow[p];
#else
			ow[p] = DO;
#endif
		fi;
		sow[p] = 0; rg = 0; rc = 0; rs = 0;
		if
		:: sg == MAXG ->
			/* the bound of the model: nothing left to claim */
			seen = false; sg = 0; sc = 0; ss = 0; late = false; ow[p] = 0;
			goto done
		:: sg < MAXG && (ss == RELEASED || ss == ABORTED || late) ->
			late = false;
			goto claim
		:: else ->
			late = false;
			goto observe
		fi
	}

claim:
#ifdef REACH_TAKEOVER
	assert(ss != HELD);
#endif
	/*
	 * Read t_submit: a claim counts as renewal 0. The claimant writes its
	 * record to a temporary file, which no one else sees. Whatever comes
	 * of the claim, the next look finds g.N+1 (ours, or a newer claimant's),
	 * so the memory of g.N is needed only for the post-claim check.
	 */
	atomic { dl[p] = DH; ow[p] = 0; seen = false; g = sg + 1 }
	/* link(): the storage creates g.N+1 only if it does not exist */
	atomic {
#ifdef BROKEN_CLAIM_REPLACE
		if
		:: top < g -> top = g
		:: else
		fi;
		rstate[g] = HELD; rctr[g] = 0
#else
		if
		:: top == sg -> top = g; rstate[g] = HELD; rctr[g] = 0
		:: else ->
			/* EEXIST with another file id: lost the race */
			dl[p] = 0; g = 0; sg = 0; sc = 0; ss = 0;
			goto observe
		fi
#endif
	}
	/* post-claim check: read g.N again, answered at some moment */
	atomic { rc = rctr[sg]; rs = rstate[sg] }
	/* its reply arrives */
	atomic {
		if
		:: rc != sc || rs != ss ->
			/* g.N changed: withdraw (the ABORTED write lands here) */
			rstate[g] = ABORTED;
			dl[p] = 0; g = 0; sg = 0; sc = 0; ss = 0; rc = 0; rs = 0;
			goto observe
		:: dl[p] == 0 ->
			/* the claim took longer than the lease lasts: give it back */
			rstate[g] = RELEASED;
			g = 0; sg = 0; sc = 0; ss = 0; rc = 0; rs = 0;
			goto observe
		:: else ->
			check_alone();
			assert(g > last_token);
			last_token = g;
			hold[p] = true;
			ctr = 0; nren = 0; sg = 0; sc = 0; ss = 0; rc = 0; rs = 0
		fi
	}

holdloop:
	do
	:: atomic {
		/* act on the protected resource, after lk_lock_check() */
		hold[p] && !cs[p] && CHECK_PASSES(p) ->
		cs[p] = true;
		check_cs_alone();
		assert(g > cs_token || (g == cs_token && cs_who == p));
		cs_token = g; cs_who = p
	   }
	:: cs[p] -> cs[p] = false
	:: atomic {
		dl[p] > 0 && nren < MAXREN ->
		/* renew: read t_submit, then send a write of the record and
		 * a probe of g.N+1 together */
		ctr++; nren++; pend[p] = DH
	   }
		/*
		 * The storage applies the write and answers the probe in either
		 * order, each at a moment of its choosing. The replies arrive
		 * with the second answer: a later arrival would only make a
		 * renewal count later or not at all, and a renewal that counts
		 * later is caught by check_alone() no less.
		 */
		if
		:: atomic { rctr[g] = ctr; rstate[g] = HELD };
		   atomic { newer = top > g; goto arrived }
		:: newer = top > g;
		   atomic { rctr[g] = ctr; rstate[g] = HELD; goto arrived }
		fi
	:: atomic {
		hold[p] && dl[p] > 0 && !cs[p] ->
		/* release while valid (no renewal in flight here): from now
		 * on this participant does not hold */
		hold[p] = false; dl[p] = 0
	   }
		/* the RELEASED write, applied by the storage later */
		atomic { rstate[g] = RELEASED; g = 0; ctr = 0; nren = 0; goto observe }
	:: atomic {
		hold[p] && dl[p] == 0 && !cs[p] ->
		/* lost: on_lost, and the handle is released without a write */
		hold[p] = false; g = 0; ctr = 0; nren = 0; goto observe
	   }
	od;

arrived:
	/* both replies of a renewal have arrived (section 18) */
	atomic {
		if
		:: newer -> dl[p] = 0   /* -ESTALE: lost at once */
#ifdef BROKEN_LATE_RENEWAL
		:: !newer && pend[p] > 0 ->
#else
		:: !newer && dl[p] > 0 && pend[p] > 0 ->
#endif
			check_alone();
			if
			:: pend[p] > dl[p] -> dl[p] = pend[p]
			:: else
			fi
		:: else ->
			/* completed at or after the deadline: ignored */
#ifdef REACH_LATE_RENEWAL
			assert(newer || dl[p] > 0);
#endif
			skip
		fi;
		pend[p] = 0; newer = false;
		goto holdloop
	}

done:
	skip
}

init
{
	atomic {
		rstate[0] = RELEASED;
		if :: rate[0] = RSLOW :: rate[0] = RFAST fi;
		if :: rate[1] = RSLOW :: rate[1] = RFAST fi;
		if :: rate[2] = RSLOW :: rate[2] = RFAST fi;
		run participant(0);
		run participant(1);
		run participant(2)
	}
}
