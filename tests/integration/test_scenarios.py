"""Checkpoint/restore scenarios: one self-checking program per scenario.

Each test starts its program, waits for READY, dumps it with lxc-cr, restores
it, sends SIGUSR1 and requires PASS from inside (see conftest.py and
progs/common.h).  LXC_CR_TEST_NO_CR=1 runs the programs without dump/restore.
"""



# ---- memory

def test_01_private_anon(run_cycle):
    run_cycle("01_mem_anon")


def test_01b_private_anon_leave_running(run_cycle):
    """Same as 01 but dumped with --leave-running (originals killed by the harness)."""
    run_cycle("01_mem_anon", dump_opts=["--leave-running"])


def test_02_protections(run_cycle):
    run_cycle("02_mem_prot")


def test_03_private_file_mapping(run_cycle):
    run_cycle("03_mem_file_private")


def test_04_shared_anon(run_cycle):
    run_cycle("04_mem_shared_anon")


def test_05_heap_brk(run_cycle):
    run_cycle("05_mem_heap")


def test_06_many_vmas(run_cycle):
    run_cycle("06_mem_many_vmas")


def test_07_stack_auxv_cmdline(run_cycle):
    run_cycle("07_mem_stack_auxv", args=["alpha", "beta gamma", "", "--δ=1"])


def test_08_vdso(run_cycle):
    run_cycle("08_mem_vdso")


# ---- registers

def test_09_gp_registers(run_cycle):
    run_cycle("09_regs_gp")


def test_10_sse_avx(run_cycle):
    run_cycle("10_regs_avx")


def test_11_avx512(run_cycle):
    run_cycle("11_regs_avx512")


def test_12_fsbase_tls(run_cycle):
    run_cycle("12_regs_tls_fsbase")


def test_13_amx(run_cycle):
    run_cycle("13_regs_amx")


# ---- blocking syscalls

def test_14_nanosleep(run_cycle):
    run_cycle("14_sys_nanosleep")


def test_15_futex(run_cycle):
    run_cycle("15_sys_futex")


def test_16_poll(run_cycle):
    run_cycle("16_sys_poll")


def test_17_wait4(run_cycle):
    run_cycle("17_sys_wait4")


def test_18_pause_sigsuspend(run_cycle):
    run_cycle("18_sys_pause")


# ---- threads

def test_19_threads(run_cycle):
    run_cycle("19_thr_many")


def test_20_mutex_condvar(run_cycle):
    run_cycle("20_thr_condvar")


def test_21_robust_list(run_cycle):
    run_cycle("21_thr_robust")


def test_22_rseq(run_cycle):
    run_cycle("22_thr_rseq")


# ---- signals and timers

def test_23_sigactions(run_cycle):
    run_cycle("23_sig_actions")


def test_24_pending_signals(run_cycle):
    run_cycle("24_sig_pending")


def test_25_itimers(run_cycle):
    run_cycle("25_sig_itimers")


def test_26_posix_timers(run_cycle):
    run_cycle("26_sig_posix_timers")


# ---- task attributes

def test_27_credentials(run_cycle):
    run_cycle("27_task_creds")


def test_28_task_attributes(run_cycle):
    run_cycle("28_task_attrs")


def test_29_seccomp(run_cycle):
    run_cycle("29_task_seccomp")


def test_42_sched_misc(run_cycle):
    run_cycle("42_task_sched_misc")


# ---- process tree

def test_30_process_tree(run_cycle):
    run_cycle("30_tree_basic")


def test_31_sessions_groups(run_cycle):
    run_cycle("31_tree_sessions")


def test_32_dead_leaders(run_cycle):
    run_cycle("32_tree_dead_leaders")


def test_33_zombies(run_cycle):
    run_cycle("33_tree_zombies")


def test_34_stopped_task(run_cycle):
    run_cycle("34_tree_stopped")


def test_35_orphan_subreaper(run_cycle):
    run_cycle("35_tree_orphans")


# ---- files

def test_36_regular_files(run_cycle):
    run_cycle("36_fd_regular")


def test_37_shared_file_description(run_cycle):
    run_cycle("37_fd_shared_ofd")


def test_38_cloexec(run_cycle):
    run_cycle("38_fd_cloexec")


def test_39_unlinked_file(run_cycle):
    run_cycle("39_fd_unlinked")


def test_40_dirfd_devices_high_fds(run_cycle):
    run_cycle("40_fd_special")


def test_41_shared_file_mapping(run_cycle):
    run_cycle("41_mem_file_shared")
