#!/bin/sh
# Installs (or removes) the capd bundle this script sits in:
#   PREFIX (/opt/capd)            the bundle: bin/ launchers, libexec/, lib/, share/
#   /usr/local/bin/{capd,capctl}  symlinks to PREFIX/bin (left alone if something else is there)
#   /etc/systemd/system/capd.service, enabled; /etc/capd/capd.conf (kept if present)
#   system user and group capd; /var/lib/capd (recordings), mode 0750. Members of the group capd
#   (usermod -aG capd USER) and root may capture through local connections (ssh -L, SSM)
# Running it again installs the files again and leaves config, user and recordings as they are.
#   --uninstall          stop and disable the service, remove the program, unit and symlinks;
#                        keep the config, the recordings and the user
#   --uninstall --purge  also remove /etc/capd, /var/lib/capd (recordings!) and the user
#   --prefix DIR         install into DIR instead of /opt/capd
#   --root DIR           treat DIR as / (an image being built, a test): no service is started,
#                        the user goes into DIR/etc/passwd (useradd --prefix)
#   --no-start           do not (re)start the service (it is still enabled)
# POSIX sh: SSM Distributor and Run Command may start it with sh, which is dash on Ubuntu.
set -eu

prefix=/opt/capd
root=/
action=install
purge=no
start=yes
user=capd

usage() {
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  exit "$1"
}

die() {
  echo "install.sh: $*" >&2
  exit 1
}

while [ $# -gt 0 ]; do
  case $1 in
    --prefix)
      [ $# -ge 2 ] || die "--prefix needs a directory"
      prefix=$2
      shift 2
      ;;
    --prefix=*)
      prefix=${1#--prefix=}
      shift
      ;;
    --root)
      [ $# -ge 2 ] || die "--root needs a directory"
      root=$2
      shift 2
      ;;
    --root=*)
      root=${1#--root=}
      shift
      ;;
    --uninstall)
      action=uninstall
      shift
      ;;
    --purge)
      purge=yes
      shift
      ;;
    --no-start)
      start=no
      shift
      ;;
    -h | --help) usage 0 ;;
    *)
      echo "install.sh: unknown option '$1'" >&2
      usage 2
      ;;
  esac
done

case $prefix in
  /*) ;;
  *) die "--prefix must be an absolute path" ;;
esac
prefix=${prefix%/}
[ -n "$prefix" ] || die "--prefix / is not allowed"
case $root in
  /*) ;;
  *) root=$(pwd)/$root ;;
esac
root=${root%/}
# Every path below is "$root$path"; root is "" for the real system.
[ -z "$root" ] || [ -d "$root" ] || die "--root $root: no such directory"
if [ "$purge" = yes ] && [ "$action" != uninstall ]; then die "--purge goes with --uninstall"; fi
[ "$(id -u)" -eq 0 ] || die "run as root (it creates a system user and a service)"

here=$(cd "$(dirname "$0")" && pwd)
unit_dir=/etc/systemd/system
wants_dir=$unit_dir/multi-user.target.wants
live=no
if [ -z "$root" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  live=yes
fi

say() { echo "install.sh: $*"; }

# Looks the user up in the target root's own files (not through NSS, which reads the host's).
user_field() {
  [ -f "$root/etc/passwd" ] || return 0
  awk -F: -v name="$user" -v field="$1" '$1 == name { print $field; exit }' "$root/etc/passwd"
}

group_exists() {
  [ -f "$root/etc/group" ] && grep -q "^${user}:" "$root/etc/group"
}

# useradd/userdel/groupdel, writing to the target root's files when there is one.
shadow() {
  command=$1
  shift
  if [ -n "$root" ]; then "$command" --prefix "$root" "$@"; else "$command" "$@"; fi
}

# The group capd is whom capd serves besides root (its default --allow-group): made even when a
# user capd already exists without it.
ensure_group() {
  if group_exists; then return 0; fi
  command -v groupadd >/dev/null 2>&1 || die "groupadd not found: make a system group $user by hand"
  shadow groupadd --system "$user"
  say "created system group $user"
}

ensure_user() {
  if [ -n "$(user_field 1)" ]; then return 0; fi
  command -v useradd >/dev/null 2>&1 || die "useradd not found: create a system user '$user' by hand"
  nologin=/bin/false
  for shell in /usr/sbin/nologin /sbin/nologin; do
    if [ -x "$root$shell" ]; then
      nologin=$shell
      break
    fi
  done
  if group_exists; then set -- --gid "$user"; else set -- --user-group; fi
  shadow useradd --system "$@" --no-create-home --home-dir /var/lib/capd --shell "$nologin" \
    --comment "capd packet capture agent" "$user"
  say "created system user $user"
}

install_files() {
  if [ ! -f "$here/libexec/capd" ] || [ ! -f "$here/lib/ld-linux-x86-64.so.2" ]; then
    die "$here is not an unpacked capd bundle (no libexec/capd or lib/ld-linux-x86-64.so.2)"
  fi
  if [ -z "$root" ]; then
    machine=$(uname -m)
    [ "$machine" = x86_64 ] || die "this bundle is for x86_64, not $machine"
  fi
  target=$root$prefix
  if [ "$here" = "$target" ]; then
    say "running from $target itself: files stay as they are"
  else
    # Copy beside, then swap: a running capd keeps its mapped files, a failed copy changes nothing.
    stage=$target.new.$$
    rm -rf "$stage"
    mkdir -p "$stage"
    for item in README.md VERSION bin install.sh lib libexec share uninstall.sh; do
      cp -R "$here/$item" "$stage/"
    done
    # A Distributor zip may not carry file modes: set them.
    chmod 0755 "$stage" "$stage/bin" "$stage/lib" "$stage/libexec" "$stage/share"
    chmod 0755 "$stage"/bin/* "$stage"/libexec/* "$stage/lib/ld-linux-x86-64.so.2" \
      "$stage/install.sh" "$stage/uninstall.sh"
    if [ -e "$target" ]; then
      mv "$target" "$target.old.$$"
      mv "$stage" "$target"
      rm -rf "$target.old.$$"
    else
      mkdir -p "$(dirname "$target")"
      mv "$stage" "$target"
    fi
    say "installed $(cat "$target/VERSION") in $target"
  fi

  mkdir -p "$root/usr/local/bin"
  for program in capd capctl; do
    link=$root/usr/local/bin/$program
    if [ -L "$link" ] || [ ! -e "$link" ]; then
      ln -sfn "$prefix/bin/$program" "$link"
    else
      say "leaving /usr/local/bin/$program alone (not a symlink); use $prefix/bin/$program"
    fi
  done

  mkdir -p "$root/etc/capd"
  if [ ! -e "$root/etc/capd/capd.conf" ]; then
    cp "$here/share/capd.conf" "$root/etc/capd/capd.conf"
    chmod 0644 "$root/etc/capd/capd.conf"
    say "wrote /etc/capd/capd.conf"
  fi

  mkdir -p "$root$unit_dir"
  sed "s|^ExecStart=/usr/bin/capd |ExecStart=$prefix/bin/capd |" "$here/share/capd.service" \
    >"$root$unit_dir/capd.service.new"
  mv "$root$unit_dir/capd.service.new" "$root$unit_dir/capd.service"
  chmod 0644 "$root$unit_dir/capd.service"

  ensure_group
  ensure_user
  mkdir -p "$root/var/lib/capd"
  chown "$(user_field 3):$(user_field 4)" "$root/var/lib/capd"
  chmod 0750 "$root/var/lib/capd"

  if [ "$live" = yes ]; then
    systemctl daemon-reload
    systemctl enable capd.service
    if [ "$start" = yes ]; then
      systemctl restart capd.service
      say "capd.service enabled and (re)started"
    else
      say "capd.service enabled, not started (--no-start)"
    fi
  else
    # What `systemctl enable` does for WantedBy=multi-user.target, without a running systemd.
    mkdir -p "$root$wants_dir"
    ln -sfn "$unit_dir/capd.service" "$root$wants_dir/capd.service"
    say "capd.service enabled for the next boot (no running systemd here)"
  fi
  # Who may use it: capd serves local clients (ssh -L, capctl --agent ssh://USER@HOST) that run as
  # root or as a member of the group capd (capd reads the group database, no new login needed).
  say "to let USER capture through ssh or a local connection: usermod -aG $user USER"
}

uninstall_files() {
  if [ "$live" = yes ]; then
    systemctl disable --now capd.service 2>/dev/null || true
  fi
  rm -f "$root$wants_dir/capd.service" "$root$unit_dir/capd.service"
  rmdir "$root$wants_dir" 2>/dev/null || true # only if capd was all it held
  if [ "$live" = yes ]; then systemctl daemon-reload; fi
  for program in capd capctl; do
    link=$root/usr/local/bin/$program
    if [ -L "$link" ] && [ "$(readlink "$link")" = "$prefix/bin/$program" ]; then rm -f "$link"; fi
  done
  rm -rf "$root$prefix"
  say "removed $prefix and capd.service"
  if [ "$purge" = yes ]; then
    rm -rf "$root/etc/capd" "$root/var/lib/capd"
    if [ -n "$(user_field 1)" ]; then shadow userdel "$user"; fi
    if group_exists; then shadow groupdel "$user"; fi
    say "purged /etc/capd, /var/lib/capd (recordings) and the user $user"
  else
    say "kept /etc/capd, /var/lib/capd (recordings) and the user $user (--purge removes them)"
  fi
}

if [ "$action" = install ]; then install_files; else uninstall_files; fi
