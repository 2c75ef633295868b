/* The NFSv3 procedure table; see nfs3.h. */
#include "server/nfs3.h"

#include "xdr/nfs3.h"

static enum rpcsrv_status proc_null(struct rpcsrv_call *call)
{
  (void)call;
  return RPCSRV_OK;
}

/* Non-idempotent procedures carry RPCSRV_NONIDEMPOTENT now, so the
 * duplicate-request cache can key on the table alone. */
static const struct rpcsrv_proc nfs3_procs[NFS3_NPROC] = {
    [NFS3_PROC_NULL] = {"NULL", proc_null, 0},
    [NFS3_PROC_GETATTR] = {"GETATTR", NULL, 0},
    [NFS3_PROC_SETATTR] = {"SETATTR", NULL, RPCSRV_NONIDEMPOTENT},
    [NFS3_PROC_LOOKUP] = {"LOOKUP", NULL, 0},
    [NFS3_PROC_ACCESS] = {"ACCESS", NULL, 0},
    [NFS3_PROC_READLINK] = {"READLINK", NULL, 0},
    [NFS3_PROC_READ] = {"READ", NULL, 0},
    [NFS3_PROC_WRITE] = {"WRITE", NULL, 0},
    [NFS3_PROC_CREATE] = {"CREATE", NULL, RPCSRV_NONIDEMPOTENT},
    [NFS3_PROC_MKDIR] = {"MKDIR", NULL, RPCSRV_NONIDEMPOTENT},
    [NFS3_PROC_SYMLINK] = {"SYMLINK", NULL, RPCSRV_NONIDEMPOTENT},
    [NFS3_PROC_MKNOD] = {"MKNOD", NULL, RPCSRV_NONIDEMPOTENT},
    [NFS3_PROC_REMOVE] = {"REMOVE", NULL, RPCSRV_NONIDEMPOTENT},
    [NFS3_PROC_RMDIR] = {"RMDIR", NULL, RPCSRV_NONIDEMPOTENT},
    [NFS3_PROC_RENAME] = {"RENAME", NULL, RPCSRV_NONIDEMPOTENT},
    [NFS3_PROC_LINK] = {"LINK", NULL, RPCSRV_NONIDEMPOTENT},
    [NFS3_PROC_READDIR] = {"READDIR", NULL, 0},
    [NFS3_PROC_READDIRPLUS] = {"READDIRPLUS", NULL, 0},
    [NFS3_PROC_FSSTAT] = {"FSSTAT", NULL, 0},
    [NFS3_PROC_FSINFO] = {"FSINFO", NULL, 0},
    [NFS3_PROC_PATHCONF] = {"PATHCONF", NULL, 0},
    [NFS3_PROC_COMMIT] = {"COMMIT", NULL, 0},
};

int nfsd_register(struct rpcsrv *rpc, void *ctx)
{
  return rpcsrv_register(rpc, NFS3_PROGRAM, NFS3_VERSION, nfs3_procs, NFS3_NPROC, ctx);
}
