/* SPDX-License-Identifier: MIT */
/*
 * A model of the lease protocol of docs/protocol.md, Part II, for spin.
 *
 * Three participants loop: observe the newest generation, judge it free,
 * claim the next generation by link, check the claim, hold it (renew, let
 * it expire, or release it), and observe again. The storage answers every
 * request at a moment of its choosing between the request being sent and
 * its reply arriving, so any request may be delayed for as long as time is
 * allowed to run, and a write can be applied long after it was sent.
 * Participants may stop taking steps at any moment for any time (a paused
 * process); their clocks keep running, as CLOCK_BOOTTIME does.
 *
 * Time. A tick process advances real time in steps; at each step every
 * participant's clock advances by its own rate, RSLOW or RFAST units per
 * step, chosen once per participant. Any interval one clock measures as d
 * is then measured by another as between d*RSLOW/RFAST and d*RFAST/RSLOW,
 * so with RSLOW = 4 and RFAST = 5 the bound of section 13 holds with
 * rho = 1/4. Durations are countdowns in the owner's clock units, started
 * when the protocol reads its clock and stopped at 0.
 *
 * What is checked, by assertions at the only two steps that can make a
 * participant believe it holds (a claim that completes, a renewal that
 * counts):
 *  - mutual exclusion: no two participants hold with their deadline not
 *    yet passed, i.e. whose lk_lock_check() would pass;
 *  - tokens: each successful acquisition's token (its generation) is above
 *    every token handed out before.
 *
 * Deliberately broken variants, selected with -D, must each make spin find
 * a violation (tools/model-check.sh checks that it does):
 *  BROKEN_RHO            both sides ignore rho: the holder keeps T - margin,
 *                        the observer waits T
 *  BROKEN_NO_DEADLINE    the holder believes it holds until it sees a newer
 *                        generation or releases, whatever its clock says
 *  BROKEN_LATE_RENEWAL   a renewal counts whenever its reply comes, even
 *                        after the deadline (the holder rule of section 18
 *                        dropped)
 *  BROKEN_FIRST_SEEN_SENT  first seen is when the read was sent, not when
 *                        its reply arrived (the observer rule's arrival end)
 *  BROKEN_CLAIM_REPLACE  a claim replaces g.N+1 if it exists (rename, not
 *                        link)
 *  REACH_TAKEOVER        not a bug: asserts that no one ever takes over a
 *                        HELD record by waiting it out, so that spin shows
 *                        that the model does reach takeovers after expiry
 */

#define NP 3        /* participants */
#ifndef MAXG
#define MAXG 2      /* generations 1..MAXG can be claimed; g.0 is the seed */
#endif
#ifndef MAXREN
#define MAXREN 1    /* renewals per hold, besides the claim (keeps states finite) */
#endif

/*
 * Clock rates 3 and 4 units per step: any interval is measured by another
 * clock as between 3/4 and 4/3 of it, so rho = 1/3. T = 12 units: the
 * holder's deadline is T(1 - rho) - margin = 7 units after t_submit (2 or
 * 3 steps), the observer waits T(1 + rho) = 16 units (4 to 6 steps).
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

#define HELD 1
#define RELEASED 2
#define ABORTED 4

/* The storage: the newest generation, and every generation's record. */
byte top = 0;
byte rstate[MAXG + 1];
byte rctr[MAXG + 1];
byte last_token = 0;

/* Per participant. Countdowns, in the participant's clock units: */
byte rate[NP];
byte hd[NP];     /* holder: time left to its deadline (0: lost, or not a holder) */
byte pend[NP];   /* holder: time left from the t_submit of the renewal in flight */
byte ow[NP];     /* observer: time left until a confirming read may be sent */
byte sow[NP];    /* observer (BROKEN_FIRST_SEEN_SENT): the same, from the send */
byte ccd[NP];    /* claimant: time left from the claim's t_submit */
bool hold[NP];   /* believes it holds (together with hd > 0) */

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
	:: atomic {
		i = 0;
		do
		:: i < NP ->
#ifndef BROKEN_NO_DEADLINE
			dec(hd[i]);
#endif
			dec(pend[i]); dec(ow[i]); dec(sow[i]); dec(ccd[i]);
			i++
		:: else -> break
		od
	   }
	od
}

/* Nobody else holds with a deadline still ahead. */
inline check_alone()
{
	j = 0;
	do
	:: j < NP -> assert(j == p || !hold[j] || hd[j] == 0); j++
	:: else -> break
	od
}

proctype participant(byte p)
{
	byte j;
	/* the newest record as this observer remembers it */
	bool seen = false;
	byte sg, sc, ss;
	/* the reply of the read in flight */
	bool late;
	byte rg, rc, rs;
	/* the hold */
	byte g, ctr, nren;
	bool newer;

	if
	:: rate[p] = RSLOW
	:: rate[p] = RFAST
	fi;

observe:
	/* send a read: it may be the confirming one */
	atomic {
		late = seen && ow[p] == 0;
#ifdef BROKEN_FIRST_SEEN_SENT
		sow[p] = DO;
#endif
	}
	/* the storage answers it at some moment */
	atomic { rg = top; rc = rctr[top]; rs = rstate[top] }
	/* the reply arrives */
	atomic {
		if
		:: rg == MAXG && !hold[p] -> goto done  /* nothing left to claim */
		:: seen && rg == sg && rc == sc && rs == ss
		:: else ->
			/* anything else restarts first seen */
			seen = true; sg = rg; sc = rc; ss = rs; late = false;
#ifdef BROKEN_FIRST_SEEN_SENT
			ow[p] = sow[p];
#else
			ow[p] = DO;
#endif
		fi;
		sow[p] = 0; rg = 0; rc = 0; rs = 0;
		if
		:: ss == RELEASED || ss == ABORTED || late -> late = false; goto judged_free
		:: else -> goto observe
		fi
	}

judged_free:
	if
	:: sg >= MAXG -> goto done   /* the bound of the model */
	:: else
	fi;
#ifdef REACH_TAKEOVER
	assert(ss != HELD);
#endif
	/* a claim counts as renewal 0: its deadline runs from here */
	ccd[p] = DH;
	g = sg + 1;
	/* link g.N+1: the storage creates it only if it does not exist */
	atomic {
#ifdef BROKEN_CLAIM_REPLACE
		if
		:: top < g -> top = g
		:: else
		fi;
		rstate[g] = HELD; rctr[g] = 0; newer = false;
#else
		if
		:: top == sg -> top = g; rstate[g] = HELD; rctr[g] = 0; newer = false
		:: else -> newer = true   /* EEXIST, another file id */
		fi
#endif
	}
	if
	:: newer -> newer = false; g = 0; goto observe
	:: else
	fi;
	/* post-claim check: g.N must still hold what was judged free */
	atomic { rc = rctr[sg]; rs = rstate[sg] }
	if
	:: rc != sc || rs != ss ->
		atomic { rstate[g] = ABORTED; ccd[p] = 0; rc = 0; rs = 0; g = 0 }
		goto observe
	:: else -> rc = 0; rs = 0
	fi;
	atomic {
		if
		:: ccd[p] == 0 ->
			/* the claim took longer than the lease lasts */
			rstate[g] = RELEASED; g = 0;
			goto observe
		:: else ->
			check_alone();
			assert(g > last_token);
			last_token = g;
			hold[p] = true; hd[p] = ccd[p]; ccd[p] = 0;
			ctr = 0; nren = 0;
			/* an observer's memory is of no use while holding */
			seen = false; sg = 0; sc = 0; ss = 0
		fi
	}

holding:
	do
	:: atomic {
		hd[p] > 0 && nren < MAXREN ->
		/* renew: a write of the record and a probe of g.N+1, sent
		 * together after t_submit was read */
		ctr++; nren++; pend[p] = DH
	   }
		/* the storage applies the write and answers the probe, in
		 * either order, each at a moment of its choosing */
		if
		:: atomic { rctr[g] = ctr; rstate[g] = HELD };
		   newer = top > g
		:: newer = top > g;
		   atomic { rctr[g] = ctr; rstate[g] = HELD }
		fi;
		/* both replies have arrived */
		atomic {
			if
			:: newer -> hd[p] = 0   /* -ESTALE: lost at once */
#ifdef BROKEN_LATE_RENEWAL
			:: !newer && pend[p] > 0 ->
#else
			:: !newer && hd[p] > 0 && pend[p] > 0 ->
#endif
				check_alone();
				if
				:: pend[p] > hd[p] -> hd[p] = pend[p]
				:: else
				fi
			:: else   /* completed at or after the deadline: ignored */
			fi;
			pend[p] = 0; newer = false
		}
	:: atomic {
		hd[p] > 0 ->
		/* release while valid (no renewal is in flight here): from
		 * now on this participant does not hold */
		hold[p] = false; hd[p] = 0
	   }
		/* the RELEASED write, applied by the storage later */
		atomic { rstate[g] = RELEASED; g = 0; ctr = 0; nren = 0 }
		goto observe
	:: atomic {
		hd[p] == 0 ->
		/* lost: on_lost, then the handle is released without a write */
		hold[p] = false; g = 0; ctr = 0; nren = 0
	   }
		goto observe
	od;

done:
	skip
}

init
{
	atomic {
		rstate[0] = RELEASED;
		run participant(0);
		run participant(1);
		run participant(2)
	}
}
