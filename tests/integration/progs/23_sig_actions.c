/* Scenario 23: signal dispositions.
 * Handlers with SA_SIGINFO|SA_RESTART (+ sa_mask {INT,QUIT}), SA_ONSTACK
 * (+ sigaltstack), SA_NODEFER|SA_RESETHAND, a combined one, plain ones;
 * SIG_IGN for SIGHUP/SIGPIPE/SIGTSTP, SIG_DFL+SA_NOCLDSTOP for SIGCHLD; SIG_IGN with a
 * mask of its own for nine more standard signals and every real-time signal from
 * SIGRTMIN+4 on (more actions than the dumper's remote calls fit in one scratch page:
 * their answers must not shift).
 * The raw kernel sigaction (handler, flags, restorer, mask) of every signal is
 * recorded before the dump.
 * After the signal: all 64 sigactions compare equal, and raising the signals
 * shows the expected behaviour: siginfo fields, mask inside the handler,
 * running on the altstack, SA_RESETHAND resetting, ignored signals ignored. */
#include "common.h"

struct ksa {
	void *handler;
	unsigned long flags;
	void *restorer;
	uint64_t mask;
};
static struct ksa before[65];

#define ALT_SIZE (256 * 1024)
static uint8_t *alt;

struct hit {
	volatile int count, signo, code, value;
	volatile uintptr_t sp;
	uint64_t mask;
};
static struct hit h_usr2, h_rt2, h_rt3, h_alrm, h_int;

static uint64_t cur_mask(void)
{
	uint64_t m = 0;
	syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &m, 8);
	return m;
}
#define BIT(s) (1ull << ((s) - 1))

static void record(struct hit *h, int sig, siginfo_t *si)
{
	volatile int local;
	h->count++;
	h->signo = si ? si->si_signo : sig;
	h->code = si ? si->si_code : 0;
	h->value = si ? si->si_value.sival_int : 0;
	h->sp = (uintptr_t)&local;
	h->mask = cur_mask();
}
static void on_usr2(int s, siginfo_t *si, void *uc) { (void)uc; record(&h_usr2, s, si); }
static void on_rt2(int s, siginfo_t *si, void *uc) { (void)uc; record(&h_rt2, s, si); }
static void on_rt3(int s) { record(&h_rt3, s, NULL); }
static void on_alrm(int s, siginfo_t *si, void *uc) { (void)uc; record(&h_alrm, s, si); }
static void on_int(int s) { record(&h_int, s, NULL); }

static void set(int sig, void *handler, int flags, const int *mask_sigs)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	if (flags & SA_SIGINFO)
		sa.sa_sigaction = handler;
	else
		sa.sa_handler = handler;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	for (; mask_sigs && *mask_sigs; mask_sigs++)
		sigaddset(&sa.sa_mask, *mask_sigs);
	DIE_IF(sigaction(sig, &sa, NULL), "sigaction(%d)", sig);
}

static int query(int sig, struct ksa *k)
{
	memset(k, 0, sizeof(*k));
	return (int)syscall(SYS_rt_sigaction, sig, NULL, k, 8);
}

static int on_alt(struct hit *h) { return h->sp >= (uintptr_t)alt && h->sp < (uintptr_t)alt + ALT_SIZE; }

int main(void)
{
	cr_init();
	alt = malloc(ALT_SIZE);
	stack_t ss = { .ss_sp = alt, .ss_size = ALT_SIZE };
	DIE_IF(!alt || sigaltstack(&ss, NULL), "sigaltstack");
	const int m_usr2[] = { SIGINT, SIGQUIT, 0 };
	const int m_rt2[] = { SIGRTMIN + 3, 0 };
	const int m_alrm[] = { SIGTERM, SIGRTMAX, 0 };
	set(SIGUSR2, on_usr2, SA_SIGINFO | SA_RESTART, m_usr2);
	set(SIGRTMIN + 2, on_rt2, SA_SIGINFO | SA_ONSTACK, m_rt2);
	set(SIGRTMIN + 3, on_rt3, SA_NODEFER | SA_RESETHAND, NULL);
	set(SIGALRM, on_alrm, SA_SIGINFO | SA_RESTART | SA_NODEFER | SA_ONSTACK, m_alrm);
	set(SIGINT, on_int, 0, NULL);
	set(SIGHUP, SIG_IGN, 0, NULL);
	set(SIGPIPE, SIG_IGN, SA_RESTART, NULL);
	set(SIGTSTP, SIG_IGN, 0, NULL);
	set(SIGCHLD, SIG_DFL, SA_NOCLDSTOP, NULL);
	const int more[] = { SIGURG, SIGWINCH, SIGTTIN, SIGTTOU, SIGPROF, SIGVTALRM, SIGXCPU, SIGXFSZ, SIGPWR };
	for (unsigned i = 0; i < sizeof(more) / sizeof(more[0]); i++) {
		const int m_own[] = { more[i] - 1, 0 };
		set(more[i], SIG_IGN, SA_RESTART, m_own);
	}
	for (int s = SIGRTMIN + 4; s <= SIGRTMAX; s++) {
		const int m_own[] = { s - 1, 0 };
		set(s, SIG_IGN, SA_RESTART, m_own);
	}
	for (int s = 1; s <= 64; s++)
		if (s != SIGKILL && s != SIGSTOP)
			DIE_IF(query(s, &before[s]), "rt_sigaction query %d", s);

	uint64_t mask0 = cur_mask();
	cr_ready();
	cr_wait();

	CHECK(cur_mask() == mask0, "signal mask 0x%llx, was 0x%llx", (unsigned long long)cur_mask(),
	      (unsigned long long)mask0);
	for (int s = 1; s <= 64; s++) {
		struct ksa k;
		if (s == SIGKILL || s == SIGSTOP)
			continue;
		if (!CHECK(query(s, &k) == 0, "rt_sigaction(%d) query failed", s))
			continue;
		CHECK(k.handler == before[s].handler && k.flags == before[s].flags &&
		      k.restorer == before[s].restorer && k.mask == before[s].mask,
		      "signal %d: action %p flags 0x%lx restorer %p mask 0x%llx, was %p 0x%lx %p 0x%llx", s,
		      k.handler, k.flags, k.restorer, (unsigned long long)k.mask, before[s].handler,
		      before[s].flags, before[s].restorer, (unsigned long long)before[s].mask);
	}

	stack_t now;
	sigaltstack(NULL, &now);
	CHECK(now.ss_sp == alt && now.ss_size == ALT_SIZE && now.ss_flags == 0, "sigaltstack changed");

	pid_t pid = getpid();
	syscall(SYS_tgkill, pid, cr_gettid(), SIGUSR2);
	CHECK(h_usr2.count == 1 && h_usr2.signo == SIGUSR2 && h_usr2.code == SI_TKILL,
	      "SIGUSR2 handler: count %d signo %d code %d", h_usr2.count, h_usr2.signo, h_usr2.code);
	CHECK((h_usr2.mask & (BIT(SIGINT) | BIT(SIGQUIT) | BIT(SIGUSR2))) ==
		      (BIT(SIGINT) | BIT(SIGQUIT) | BIT(SIGUSR2)),
	      "SIGUSR2 handler mask 0x%llx lacks INT|QUIT|USR2", (unsigned long long)h_usr2.mask);
	CHECK(!on_alt(&h_usr2), "SIGUSR2 handler (no SA_ONSTACK) ran on the altstack");

	union sigval v = { .sival_int = 2323 };
	sigqueue(pid, SIGRTMIN + 2, v);
	CHECK(h_rt2.count == 1 && h_rt2.code == SI_QUEUE && h_rt2.value == 2323,
	      "SIGRTMIN+2 handler: count %d code %d value %d", h_rt2.count, h_rt2.code, h_rt2.value);
	CHECK(on_alt(&h_rt2), "SA_ONSTACK handler ran at %p, not on the altstack", (void *)h_rt2.sp);
	CHECK((h_rt2.mask & (BIT(SIGRTMIN + 2) | BIT(SIGRTMIN + 3))) == (BIT(SIGRTMIN + 2) | BIT(SIGRTMIN + 3)),
	      "SIGRTMIN+2 handler mask 0x%llx", (unsigned long long)h_rt2.mask);

	syscall(SYS_tgkill, pid, cr_gettid(), SIGRTMIN + 3);
	CHECK(h_rt3.count == 1, "SIGRTMIN+3 handler count %d", h_rt3.count);
	CHECK(!(h_rt3.mask & BIT(SIGRTMIN + 3)), "SA_NODEFER: SIGRTMIN+3 blocked in its own handler");
	struct ksa k;
	query(SIGRTMIN + 3, &k);
	CHECK(k.handler == SIG_DFL, "SA_RESETHAND: SIGRTMIN+3 action is %p after delivery", k.handler);

	syscall(SYS_tgkill, pid, cr_gettid(), SIGALRM);
	CHECK(h_alrm.count == 1 && h_alrm.code == SI_TKILL, "SIGALRM handler: count %d code %d", h_alrm.count,
	      h_alrm.code);
	CHECK(on_alt(&h_alrm), "SIGALRM (SA_ONSTACK) handler not on the altstack");
	CHECK(!(h_alrm.mask & BIT(SIGALRM)) && (h_alrm.mask & BIT(SIGTERM)) && (h_alrm.mask & BIT(SIGRTMAX)),
	      "SIGALRM handler mask 0x%llx", (unsigned long long)h_alrm.mask);

	raise(SIGINT);
	CHECK(h_int.count == 1 && (h_int.mask & BIT(SIGINT)), "SIGINT handler count %d mask 0x%llx", h_int.count,
	      (unsigned long long)h_int.mask);
	raise(SIGHUP); /* ignored: we survive */
	raise(SIGPIPE);
	raise(SIGTSTP);
	CHECK(h_usr2.count + h_rt2.count + h_rt3.count + h_alrm.count + h_int.count == 5,
	      "ignored signals ran a handler");
	CHECK(cur_mask() == mask0, "signal mask 0x%llx after the handlers, expected 0x%llx",
	      (unsigned long long)cur_mask(), (unsigned long long)mask0);
	cr_finish();
}
