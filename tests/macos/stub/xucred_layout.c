/* The layout of Darwin's struct xucred (<sys/ucred.h>), as a C compiler lays it out.
 *
 * tests/macos/test_xucred.py builds this with gcc on Linux (the same ABI rules
 * as macOS on x86_64 and arm64 for these types: 4-byte u_int, uid_t and gid_t,
 * 2-byte short) and compares its sizeof and offsetof with the struct format
 * bridge.platform.macos reads, then the bytes of one filled-in value with the
 * recorded bytes the parser tests use. The pad bytes are set to 0xAA, so a
 * parser that read them would see garbage.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

#define XUCRED_NGROUPS 16 /* NGROUPS in <sys/param.h> */

struct xucred {
    u_int cr_version;
    uid_t cr_uid;
    short cr_ngroups;
    gid_t cr_groups[XUCRED_NGROUPS];
};

int main(void) {
    printf("sizeof %zu\n", sizeof(struct xucred));
    printf("cr_version %zu\n", offsetof(struct xucred, cr_version));
    printf("cr_uid %zu\n", offsetof(struct xucred, cr_uid));
    printf("cr_ngroups %zu\n", offsetof(struct xucred, cr_ngroups));
    printf("cr_groups %zu\n", offsetof(struct xucred, cr_groups));

    struct xucred value;
    memset(&value, 0xAA, sizeof value);
    value.cr_version = 0;
    value.cr_uid = 501; /* the first user of a Mac */
    value.cr_ngroups = 3;
    for (int i = 0; i < XUCRED_NGROUPS; i++) {
        value.cr_groups[i] = 0;
    }
    value.cr_groups[0] = 20; /* staff */
    value.cr_groups[1] = 12; /* everyone */
    value.cr_groups[2] = 61; /* localaccounts */
    const unsigned char *bytes = (const unsigned char *)&value;
    printf("bytes ");
    for (size_t i = 0; i < sizeof value; i++) {
        printf("%02x", bytes[i]);
    }
    printf("\n");
    return 0;
}
