/*
 * The two pieces of the restorer that must not run on a C stack frame:
 * the entry at offset 0, which leaves the caller's stack, and the clone3
 * call, whose child must not return into the parent's frame.
 */

/* Offsets into struct rst_args / struct rst_thread; restorer.c asserts them. */
#define RST_ARGS_THREADS        0x118
#define RST_THREAD_STACK_TOP    0x8
#define NR_CLONE3               435

        .section .text.entry, "ax"

/*
 * void entry(struct rst_args *a)
 * The Python thread's stack is about to be unmapped: move to threads[0]'s
 * stack in the blob area and never come back.  %rdi still holds a.
 */
        .globl  entry
        .type   entry, @function
entry:
        mov     RST_ARGS_THREADS(%rdi), %rax
        mov     RST_THREAD_STACK_TOP(%rax), %rsp
        and     $-16, %rsp
        xor     %ebp, %ebp
        call    restore_main
        ud2
        .size   entry, . - entry

        .text
/*
 * long spawn_thread(struct clone_args *ca, size_t size,
 *                   struct rst_args *a, struct rst_thread *t, uint32_t *done)
 * The parent gets clone3's result.  The child starts on the stack clone3 gave
 * it, with the parent's registers, and goes straight to thread_main(a, t, done).
 */
        .globl  spawn_thread
        .hidden spawn_thread
        .type   spawn_thread, @function
spawn_thread:
        mov     %rcx, %r9               /* syscall clobbers %rcx */
        mov     $NR_CLONE3, %eax
        syscall
        test    %rax, %rax
        jnz     1f
        mov     %rdx, %rdi
        mov     %r9, %rsi
        mov     %r8, %rdx
        xor     %ebp, %ebp
        and     $-16, %rsp
        call    thread_main
        ud2
1:      ret
        .size   spawn_thread, . - spawn_thread

        .section .note.GNU-stack, "", @progbits
