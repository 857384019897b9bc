/* Links against an installed kdfuse through find_package and checks the C API answers. Plain C. */
#include <kdfuse/kdfuse.h>

#include <stdio.h>
#include <string.h>

int main(void)
{
    if (kdfGetVersion() != KDFUSE_VERSION) {
        fprintf(stderr, "library version %d != header version %d\n", kdfGetVersion(), KDFUSE_VERSION);
        return 1;
    }
    if (strcmp(kdfGetBackendName(), EXPECTED_BACKEND) != 0) {
        fprintf(stderr, "backend %s, expected %s\n", kdfGetBackendName(), EXPECTED_BACKEND);
        return 1;
    }
    printf("kdfuse %d (%s): %s\n", kdfGetVersion(), kdfGetBackendName(), kdfGetStatusName(KDF_STATUS_SHAPE_MISMATCH));
    return 0;
}
