"""Removing a tree that hostile code may have made: deep, unreadable, full of FIFOs and symlinks.

Used by the worker's wipe between jobs without isolation, and by the pool for a worker's area
and for the directories a killed pool left behind. Imports nothing of the sandbox.
"""

from __future__ import annotations

import os
import stat


def remove_tree(path: str) -> bool:
    """Remove a file or a whole tree; True when nothing is left.

    Iterative and fd-relative: no recursion (a tree thousands of levels deep is fine), no path
    longer than one name, symlinks never followed, directories that deny access opened up first.
    """
    parent, name = os.path.split(path)
    try:
        top = os.open(parent or ".", os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return not os.path.lexists(path)
    try:
        _remove_entry(top, name)
    finally:
        os.close(top)
    return not os.path.lexists(path)


def _remove_entry(dir_fd: int, name: str) -> None:
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        _ignore(os.unlink, name, dir_fd=dir_fd)
        return
    # One directory open at a time (a deep tree must not run out of fds): descend into the first
    # subdirectory left, unlink everything else, and climb back up through ".." once it is empty.
    cur = _open_dir(dir_fd, name)
    names = [name]
    while cur is not None:
        sub = None
        try:
            with os.scandir(cur) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            sub = entry.name
                            break
                    except OSError:
                        pass
                    _ignore(os.unlink, entry.name, dir_fd=cur)
        except OSError:
            pass
        if sub is not None:
            nxt = _open_dir(cur, sub)
            os.close(cur)
            cur = nxt  # None: a directory we cannot open; the caller sees what is left
            names.append(sub)
            continue
        done = names.pop()
        parent = os.open("..", os.O_RDONLY | os.O_DIRECTORY, dir_fd=cur) if names else None
        os.close(cur)
        _ignore(os.rmdir, done, dir_fd=parent if parent is not None else dir_fd)
        cur = parent


def _open_dir(parent_fd: int, name: str) -> int | None:
    """Open a directory for listing and removal, granting ourselves access if its mode denies it."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    for attempt in range(2):
        try:
            fd = os.open(name, flags, dir_fd=parent_fd)
            if attempt == 0:
                _ignore(os.fchmod, fd, stat.S_IRWXU)  # its entries must be removable
            return fd
        except PermissionError:
            try:
                os.chmod(name, stat.S_IRWXU, dir_fd=parent_fd, follow_symlinks=False)
            except (OSError, NotImplementedError):
                return None
        except OSError:
            return None
    return None


def _ignore(func, *args, **kwargs) -> None:  # noqa: ANN001
    try:
        func(*args, **kwargs)
    except OSError:
        pass
