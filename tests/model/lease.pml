/* SPDX-License-Identifier: MIT */
/*
 * A model of the lease protocol of docs/protocol.md, Part II (sections 15
 * to 18 and 20, implemented in src/lease.c and src/engine.c), for the spin
 * model checker. tools/model-check.sh runs it and its broken variants;
 * docs/protocol.md, section 23.4, says what it covers and what it leaves
 * out.
 *
 * Three participants. Participant 0 has just claimed g.1 and holds it; the
 * other two have just sent their first read. Each then loops: observe the
 * newest generation and judge it, claim the next generation by link, check
 * the claim, hold it (enter and leave a critical section, only after
 * lk_lock_check() passes; renew; release; or find the lease lost), and
 * observe again. One takeover is explored: a participant that sees
 * generation MAXG stops. The storage answers every request at a moment of
 * its choosing between the request being sent and its reply arriving, so a
 * request can wait in a stalled server for as long as time is allowed to
 * run, and a write can be applied long after it was sent. Any participant
 * can stop taking steps at any point for any number of clock ticks (a
 * paused process) while its clock keeps counting, as CLOCK_BOOTTIME does;
 * when it resumes, it goes on from where it stopped.
 *
 * Time. Real time is the count of ticks of the clock process; between two
 * ticks any number of steps may happen, and a paused participant lets ticks
 * go by. At each tick every participant's own clock advances by its rate,
 * RSLOW or RFAST units, fixed per participant (all combinations are
 * explored). Every real interval holds the same number of ticks for
 * everyone, so an interval one clock measures as d is measured by another
 * as between d*RSLOW/RFAST and d*RFAST/RSLOW, which with rates 3 and 4 is
 * within [d(1 - rho), d(1 + rho)] for rho = 1/3: the bound of section 13.
 * Each duration the protocol measures is a countdown in its owner's clock
 * units, started where the protocol reads its clock (t_submit for the
 * holder, the arrival of a reply for an observer) and stopped at 0. Clock
 * offsets do not exist here because they do not matter: no one compares
 * times taken on different clocks.
 *
 * Storage. The lock directory holds g.0 .. g.top, all of them (clean-up is
 * not modelled); g.0 is the RELEASED first generation. A record is (state,
 * counter); the nonce is implied, since each generation is created once. A
 * claim's link() is one atomic step that creates g.N+1 only if it does not
 * exist.
 *
 * What is checked, by assertions:
 *  - mutual exclusion: at no moment do two participants both hold with
 *    their deadline not yet passed, i.e. both would pass lk_lock_check().
 *    Asserted at the only two steps that give a participant a deadline
 *    ahead (a claim that completes, a renewal that counts), and again on
 *    entering the critical section: no other participant is in it with its
 *    check still passing;
 *  - tokens: each successful claim's token (its generation) is above every
 *    token handed out before, and each entry into the critical section
 *    carries a token above every token used there before, or equal to it
 *    when the same hold entered last.
 *
 * Deliberately broken variants, selected with -D, must each make spin find
 * an assertion violation (tools/model-check.sh fails if one does not):
 *  BROKEN_NO_CHECK        a holder enters the critical section without
 *                         calling lk_lock_check(): after a pause it acts on
 *                         a lease that another holder has taken over
 *  BROKEN_RHO             both sides ignore rho: the holder keeps T - margin,
 *                         the observer waits T
 *  BROKEN_LATE_RENEWAL    a renewal counts whenever its reply comes, even
 *                         after the deadline (the holder rule of section 18
 *                         dropped): a renewal delayed in the server revives
 *                         a lease that an observer has taken over
 *  BROKEN_FIRST_SEEN_SENT first seen is when the read was sent, not when its
 *                         reply arrived (the observer rule's arrival end)
 *  BROKEN_CLAIM_REPLACE   a claim replaces g.N+1 if it exists (a rename, not
 *                         a link): two claimants both win a generation
 * Reachability checks, not bugs: each asserts that something never happens
 * which the model must be able to do, so that a clean run of the real model
 * is not clean merely because it never gets that far:
 *  REACH_TAKEOVER         a HELD lease is claimed after it was waited out
 *  REACH_CLAIM_RACE       a claimant loses the link to another claimant
 *  REACH_ABORT            the post-claim check withdraws a claim
 *  REACH_NEW_HOLDER_ACTS  the holder of g.2 enters the critical section
 *  REACH_LATE_RENEWAL     a renewal's replies arrive after the deadline
 */

#define NP 3        /* participants */
#ifndef MAXG
#define MAXG 2      /* generations up to MAXG can be claimed */
#endif
#ifndef MAXREN
#define MAXREN 1    /* renewals per hold, besides the claim (keeps states finite) */
#endif

/*
 * Clock rates 3 and 4 units per tick: rho = 1/3. T = 12 units. The holder's
 * deadline is T(1 - rho) - margin = 7 units after t_submit, which is 2 or 3
 * ticks; the observer waits T(1 + rho) = 16 units after first seen, 4 to 6
 * ticks. The numbers are about as small as keeps every broken variant
 * visible: for the late-renewal bug, a renewal sent just before the
 * deadline must reach beyond the observer's wait, so the wait must be
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
byte dl[NP];     /* time left to the deadline: of the hold, or of the claim
                  * in progress (a claim counts as renewal 0) */
byte pend[NP];   /* holder: time left from the t_submit of the renewal in flight */
byte ow[NP];     /* observer: time left until a read may confirm expiry */
byte sow[NP];    /* observer (BROKEN_FIRST_SEEN_SENT): the same, from the send */
bool hold[NP];   /* lk_lock_acquire() returned 0; not yet released or lost */
bool cs[NP];     /* in the critical section */

/* The witnesses of the token property. */
byte last_token = 0;   /* highest token a claim handed out */
byte cs_token = 0;     /* highest token used in the critical section */
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

/*
 * Nobody but p has v set with its deadline ahead: with v = hold, nobody else
 * holds; with v = cs, nobody else is in the critical section with its check
 * still passing. Written out for the three participants.
 */
#define ALONE(v) ((p == 0 || !v[0] || dl[0] == 0) && \
		  (p == 1 || !v[1] || dl[1] == 0) && \
		  (p == 2 || !v[2] || dl[2] == 0))

/* The first read of a new look goes out; later ones go out in observe. */
inline first_read()
{
#ifdef BROKEN_FIRST_SEEN_SENT
	sow[p] = DO;
#endif
	late = false
}

proctype participant(byte p)
{
	/* the newest record as this observer remembers it */
	bool seen = false;
	byte sg, sc, ss;
	/* the read in flight was sent late enough to confirm expiry */
	bool late = false;
	/* the hold */
	byte g, ctr, nren;
	bool newer;

	if
	:: p == 0 -> g = 1; goto holdloop   /* holds g.1, just claimed */
	:: else
	fi;

observe:
	/*
	 * One look (section 15): the storage answers the read in flight, its
	 * reply arrives, the observer judges (section 16) and sends its next
	 * read, all at one moment; the time a read spends in the storage is the
	 * time until the next such step, any number of ticks. Taking the
	 * reply's way back and the wait before the next read as zero loses no
	 * behaviour: reads change nothing and records only move forward, so a
	 * slower observer is matched by this one holding its read in flight
	 * instead, and this one first sees every record no later.
	 */
	atomic {
		if
		:: top == MAXG ->
			/* the bound of the model: nothing left to claim */
			seen = false; sg = 0; sc = 0; ss = 0; late = false;
			ow[p] = 0; sow[p] = 0;
			goto done
		:: else
		fi;
		if
		:: seen && sg == top && sc == rctr[top] && ss == rstate[top] ->
			if
			:: late || ss == RELEASED || ss == ABORTED -> goto free
			:: else
			fi
		:: else ->
			/* anything else restarts first seen, at the arrival */
			seen = true; sg = top; sc = rctr[top]; ss = rstate[top];
#ifdef BROKEN_FIRST_SEEN_SENT
			ow[p] = sow[p];
#else
			ow[p] = DO;
#endif
			if
			:: ss == RELEASED || ss == ABORTED -> goto free
			:: else
			fi
		fi;
		/* the next read goes out: it confirms expiry only if sent
		 * T(1 + rho) after first seen */
		late = ow[p] == 0;
#ifdef BROKEN_FIRST_SEEN_SENT
		sow[p] = DO;
#endif
		goto observe;
free:
		/*
		 * Whatever comes of the claim, the next look finds g.N+1 (ours,
		 * or a newer claimant's), so the memory of g.N is kept only for
		 * the post-claim check.
		 */
#ifdef REACH_TAKEOVER
		assert(ss != HELD);
#endif
		late = false; ow[p] = 0; sow[p] = 0; seen = false
	}

	/*
	 * Claim (section 17). Read t_submit: a claim counts as renewal 0. The
	 * claimant writes its record to a temporary file, which no one else
	 * sees, and links it to g.N+1.
	 */
	atomic { dl[p] = DH; g = sg + 1 }
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
#ifdef REACH_CLAIM_RACE
			assert(false);
#endif
			dl[p] = 0; g = 0; sg = 0; sc = 0; ss = 0;
			first_read(); goto observe
		fi
#endif
	}
	/*
	 * Post-claim check: read g.N again. Its answer and its arrival are one
	 * step: a later arrival would only give the hold later, and a violation
	 * at that later moment is caught no less, by the other participant's
	 * assertion of ALONE(hold).
	 */
	atomic {
		newer = rctr[sg] != sc || rstate[sg] != ss; sg = 0; sc = 0; ss = 0;
		if
		:: newer ->
			/* g.N changed: withdraw (the ABORTED write lands here) */
#ifdef REACH_ABORT
			assert(false);
#endif
			rstate[g] = ABORTED;
			dl[p] = 0; g = 0; newer = false;
			first_read(); goto observe
		:: !newer && dl[p] == 0 ->
			/* the claim took longer than the lease lasts: give it back */
			rstate[g] = RELEASED;
			g = 0;
			first_read(); goto observe
		:: !newer && dl[p] > 0 ->
			assert(ALONE(hold));
			assert(g > last_token);
			last_token = g;
			hold[p] = true;
			ctr = 0; nren = 0
		fi
	}

holdloop:
	do
	:: atomic {
		/* act on the protected resource, after lk_lock_check() */
		hold[p] && !cs[p] && CHECK_PASSES(p) ->
		cs[p] = true;
#ifdef REACH_NEW_HOLDER_ACTS
		assert(g == 1);
#endif
		assert(ALONE(cs));
		assert(g > cs_token || (g == cs_token && cs_who == p));
		cs_token = g; cs_who = p
	   }
	:: cs[p] -> cs[p] = false
	:: atomic {
		/* renew (section 18): read t_submit, then send a write of the
		 * record and a probe of g.N+1 together */
		hold[p] && dl[p] > 0 && nren < MAXREN ->
		ctr++; nren++; pend[p] = DH
	   }
		/*
		 * The storage applies the write and answers the probe in either
		 * order, each at a moment of its choosing. Both replies arrive
		 * with the second answer: a later arrival would only make the
		 * renewal count later or not at all, and one that counts later
		 * is caught by ALONE(hold) no less.
		 */
		if
		:: atomic { rctr[g] = ctr; rstate[g] = HELD };
		   atomic { newer = top > g; goto arrived }
		:: newer = top > g;
		   atomic { rctr[g] = ctr; rstate[g] = HELD; goto arrived }
		fi
	:: atomic {
		/* release while valid (section 20; no renewal is in flight
		 * here): from now on this participant does not hold */
		hold[p] && dl[p] > 0 && !cs[p] ->
		hold[p] = false; dl[p] = 0
	   }
		/* the RELEASED write, applied by the storage later */
		atomic { rstate[g] = RELEASED; g = 0; ctr = 0; nren = 0; first_read(); goto observe }
	:: atomic {
		/* lost: on_lost; the handle is released without a write */
		hold[p] && dl[p] == 0 && !cs[p] ->
		hold[p] = false; g = 0; ctr = 0; nren = 0; first_read(); goto observe
	   }
	od;

arrived:
	/* both replies of a renewal have arrived */
	atomic {
		if
		:: newer -> dl[p] = 0   /* g.N+1 exists: -ESTALE, lost at once */
#ifdef BROKEN_LATE_RENEWAL
		:: !newer && pend[p] > 0 ->
#else
		:: !newer && dl[p] > 0 && pend[p] > 0 ->
#endif
			assert(ALONE(hold));
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
		/* participant 0 has just claimed g.1 from the RELEASED g.0 */
		rstate[0] = RELEASED;
		top = 1; rstate[1] = HELD; hold[0] = true; dl[0] = DH; last_token = 1;
#ifdef BROKEN_FIRST_SEEN_SENT
		sow[1] = DO; sow[2] = DO;
#endif
		/* participants 1 and 2 start alike, so rate[1] <= rate[2] covers
		 * every case */
		if :: rate[0] = RSLOW :: rate[0] = RFAST fi;
		if
		:: rate[1] = RSLOW; rate[2] = RSLOW
		:: rate[1] = RSLOW; rate[2] = RFAST
		:: rate[1] = RFAST; rate[2] = RFAST
		fi;
		run participant(0);
		run participant(1);
		run participant(2)
	}
}
