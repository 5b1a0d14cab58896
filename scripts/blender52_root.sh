#!/usr/bin/env bash
# Debian sid's Blender 5.2 (Python 3.14) in a cached root filesystem, run in a virtual X window.
#
#   scripts/blender52_root.sh ensure         build the root filesystem if it is missing (needs root, mmdebstrap)
#   scripts/blender52_root.sh path           print the root filesystem's directory
#   scripts/blender52_root.sh status         exit 0 when the root filesystem is ready, else say why and exit 1
#   scripts/blender52_root.sh run CMD...     run CMD inside it, with DISPLAY set to a fresh Xvfb server
#   scripts/blender52_root.sh rebuild        throw the cached root filesystem away and build it again
#
# The root filesystem lives outside the clone (MODELSLAB_BLENDER52_CACHE, default ~/.cache/modelslab-blender52)
# and is rebuilt only when missing or when the package list below changes. `run` bind-mounts /proc, /sys, /dev,
# /dev/pts and /dev/shm in a private mount namespace and unmounts them on every exit path. The chroot shares
# the host's network namespace, so a server on the host's 127.0.0.1 is reachable from inside.
# Environment for `run`: BLENDER52_SCREEN (Xvfb screen, default 1600x1000x24); BLENDER52_PASS_ENV, names of
# variables to pass into the chroot (which otherwise starts from an empty environment), so that secrets such as
# an API key never appear on a command line.
set -euo pipefail

CACHE_DIR=${MODELSLAB_BLENDER52_CACHE:-$HOME/.cache/modelslab-blender52}
ROOT=$CACHE_DIR/rootfs
STAMP=$ROOT/.modelslab-rootfs
SUITE=sid
# python3-cattr: Blender's own extension manager (bl_pkg) prints tracebacks at start without it.
# xdotool clicks the sidebar tab (Region.active_panel_category is read-only in 5.2); x11-apps has xwd.
PACKAGES=blender,xvfb,xauth,python3-requests,python3-numpy,python3-cattr,x11-apps,imagemagick,xdotool
SCREEN=${BLENDER52_SCREEN:-1600x1000x24}

die() {
  echo "blender52_root: $*" >&2
  exit 1
}

# The Debian mirror apt is configured with on this machine (deb822 .sources or one-line sources.list).
debian_mirror() {
  local uri=""
  shopt -s nullglob
  local file
  for file in /etc/apt/sources.list.d/*.sources; do
    uri=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' "$file")
    [[ -n $uri ]] && break
  done
  if [[ -z $uri ]]; then
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [[ -f $file ]] || continue
      uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/) { print $i; exit } }' "$file")
      [[ -n $uri ]] && break
    done
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

ready() {
  [[ -x $ROOT/usr/bin/blender && -f $STAMP && "$(cat "$STAMP")" == "$PACKAGES" ]]
}

build() {
  [[ $(id -u) == 0 ]] || die "building the root filesystem needs root (mmdebstrap --variant=apt, chroot)"
  command -v mmdebstrap >/dev/null || die "mmdebstrap is not installed (apt-get install mmdebstrap)"
  local mirror tmp started
  mirror=$(debian_mirror)
  mkdir -p "$CACHE_DIR"
  tmp=$(mktemp -d "$CACHE_DIR/rootfs.building.XXXXXX")
  # A half-built tree is never left where `ready` would look.
  trap 'rm -rf "$tmp"' EXIT
  started=$SECONDS
  echo "== building Debian $SUITE root filesystem with Blender in $ROOT (mirror $mirror)"
  # sid's Release file can be past its Valid-Until date on a snapshot mirror, hence the apt option.
  mmdebstrap --variant=apt --aptopt='Acquire::Check-Valid-Until "false"' \
    --include="$PACKAGES" "$SUITE" "$tmp" "$mirror"
  echo "$PACKAGES" >"$tmp/.modelslab-rootfs"
  rm -rf "$ROOT"
  mv "$tmp" "$ROOT"
  trap - EXIT
  echo "== root filesystem ready in $((SECONDS - started)) s: $(chroot "$ROOT" blender --version 2>/dev/null | head -1)"
}

# Inside a private mount namespace (see `run`): bind the kernel file systems, always unmount them again.
MOUNTED=()
unmount_all() {
  local i
  for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
    umount -l "${MOUNTED[i]}" 2>/dev/null || echo "blender52_root: could not unmount ${MOUNTED[i]}" >&2
  done
  MOUNTED=()
}

run_in_namespace() {
  trap unmount_all EXIT
  trap 'exit 130' INT TERM
  local target
  for target in proc sys dev dev/pts dev/shm; do
    [[ -d /$target ]] || continue
    mkdir -p "$ROOT/$target"
    mount --bind "/$target" "$ROOT/$target"
    MOUNTED+=("$ROOT/$target")
  done
  # xvfb-run -a picks a free display number (several runs can share the root filesystem) and sets up xauth.
  local passed=() name
  for name in ${BLENDER52_PASS_ENV:-}; do
    [[ -n ${!name+set} ]] && passed+=("$name=${!name}")
  done
  chroot "$ROOT" /usr/bin/env -i \
    PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb "${passed[@]}" \
    xvfb-run -a -s "-screen 0 $SCREEN -nolisten tcp" "$@"
}

run() {
  [[ $(id -u) == 0 ]] || die "running the chroot needs root"
  ready || die "root filesystem missing in $ROOT (run: $0 ensure)"
  [[ $# -gt 0 ]] || die "usage: $0 run CMD..."
  # unshare -m: the bind mounts exist only in this namespace, so even a killed run leaves no mount behind;
  # the trap inside unmounts them on every ordinary exit path as well.
  exec unshare --mount --propagation private -- "$0" __run_in_namespace "$@"
}

case ${1:-} in
  ensure) ready || build ;;
  rebuild)
    rm -rf "$ROOT"
    build
    ;;
  status)
    if ready; then
      echo "ready: $ROOT"
    else
      echo "missing: $ROOT (scripts/blender52_root.sh ensure)"
      exit 1
    fi
    ;;
  path) echo "$ROOT" ;;
  run)
    shift
    run "$@"
    ;;
  __run_in_namespace)
    shift
    run_in_namespace "$@"
    ;;
  *) die "usage: $0 ensure|rebuild|status|path|run CMD..." ;;
esac
