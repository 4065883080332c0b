// LD_PRELOAD shim for tests/e2e/run_lock_nfs.sh: flock(2) as Linux's NFS client (2.6.12 on) does
// it, as a whole-file byte-range lock (here an open-file-description lock, which keeps flock's
// owner). An exclusive one needs a descriptor open for writing: on a folder's, or a file opened
// read-only, it fails with EBADF, as on NFS.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>

int flock(int fd, int op) {
  struct flock l = {0};
  l.l_whence = SEEK_SET;  // l_start 0, l_len 0: the whole file
  l.l_type = (op & LOCK_UN) ? F_UNLCK : (op & LOCK_EX) ? F_WRLCK : F_RDLCK;
  if (fcntl(fd, (op & LOCK_NB) ? F_OFD_SETLK : F_OFD_SETLKW, &l) == 0) return 0;
  if (errno == EAGAIN || errno == EACCES) errno = EWOULDBLOCK;  // held by another
  return -1;
}
