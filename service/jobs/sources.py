"""Where a scene may come from, checked before anything opens it.

- Local paths must resolve (symlinks followed) inside one of the allowed data roots; ``..``, NUL
  bytes and GDAL virtual paths (``/vsicurl/...``) are refused outright.
- Remote scenes (``http(s)://``, ``s3://``) are off unless the operator turns them on; then the URL
  must match the allow-list, and an http(s) host must not resolve to a loopback, link-local,
  multicast, unspecified, reserved or cloud-metadata address (nor a private one, unless allowed).
  The runner downloads http(s) scenes itself, re-checking every redirect and the address it
  actually connected to, with a size limit; GDAL never fetches a user's URL.
- Uploaded and downloaded files must be TIFFs (by their first bytes): other formats GDAL reads,
  such as VRT, can point at arbitrary files and URLs. The one other file fetched is the metadata
  beside an http(s) scene that gives its view (a Maxar ``.IMD`` or ``.XML``, an Airbus DIMAP, a
  STAC or Planet JSON: ``fetch_view_sidecar``), by the same checks; only the view read from it is
  kept.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urljoin, urlsplit, urlunsplit

from service.errors import NotARaster, RailsightError, SceneError, SceneNotFound
from service.jobs.errors import BadScenePath, SceneNotAllowed, TooLarge
from service.scene_metadata import candidate_names, dimap_name
from service.service_settings import ServiceSettings
from service.view_geometry import imd_text, view_from_metadata_text

REMOTE_SCHEMES = ("http", "https", "s3")
MAX_REDIRECTS = 5
# Cloud metadata services that are not already link-local (169.254.0.0/16 and fe80::/10 are).
METADATA_ADDRESSES = {
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    ipaddress.ip_address("fd00:ec2::254"),  # AWS IMDS over IPv6
}
METADATA_HOSTS = {"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"}
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
SIDECAR_MAX_BYTES = 256 * 1024  # a Maxar .IMD is a few kB, its .XML, a DIMAP or a STAC item tens

Resolver = Callable[[str], list[str]]


@dataclass(frozen=True)
class SceneRef:
    kind: str  # "path" | "url"
    location: str  # resolved absolute path, or the URL
    name: str  # as the client gave it


def resolve_host(host: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise SceneNotFound(f"remote host {host!r} does not resolve ({exc.strerror})") from exc
    return sorted({str(info[4][0]) for info in infos})


def parse_scene(raw: str, settings: ServiceSettings, *, resolver: Resolver = resolve_host) -> SceneRef:
    """Check a scene reference from a request; raises BadScenePath (malformed), SceneNotAllowed."""
    if not isinstance(raw, str) or not raw.strip():
        raise BadScenePath("scene must be a non-empty path or URL")
    if "\x00" in raw or any(ord(ch) < 32 for ch in raw):
        raise BadScenePath("scene contains control characters")
    scheme = urlsplit(raw).scheme.lower()
    if "://" in raw:
        if scheme not in REMOTE_SCHEMES:
            raise BadScenePath(f"unsupported scene URL scheme {scheme!r}: use a path, http(s):// or s3://")
        return SceneRef("url", check_remote(raw, settings, resolver=resolver), raw)
    return SceneRef("path", str(check_local(raw, settings.allowed_roots())), raw)


def check_local(raw: str, roots: list[Path]) -> Path:
    """The resolved path of ``raw`` if it lies inside one of ``roots``. Relative paths are taken
    relative to each root in turn (the first that exists wins)."""
    if raw.startswith("/vsi") or raw.lower().startswith(("file:", "vsi")):
        raise BadScenePath("GDAL virtual paths and file: URLs are not accepted; give a plain path")
    pure = PurePosixPath(raw)
    if ".." in pure.parts:
        raise BadScenePath("scene path must not contain '..'")
    candidates = [Path(raw)] if pure.is_absolute() else [root / raw for root in roots]
    inside: list[Path] = []
    for candidate in candidates:
        resolved = Path(os.path.realpath(candidate))
        if any(resolved.is_relative_to(root) for root in roots):
            if resolved.exists():
                return resolved
            inside.append(resolved)
    if inside:
        return inside[0]  # inside a root but missing: inspecting it says "not found" (422)
    raise SceneNotAllowed(
        f"scene path {raw!r} is outside the allowed data roots (RAILSIGHT_DATA_ROOTS); "
        "or upload the file (multipart field 'scene')"
    )


def _host_allowed(url: str, scheme: str, host: str, allow_list: list[str]) -> bool:
    for entry in allow_list:
        entry = entry.strip()
        if not entry:
            continue
        if "://" in entry:
            if url.startswith(entry if entry.endswith("/") else entry + "/"):
                return True
            continue
        entry = entry.lower().rstrip(".")
        if entry.startswith("*."):
            if host.endswith(entry[1:]) and host != entry[2:]:
                return True
        elif host == entry:
            return True
    return False


def blocked_address(address: str, *, allow_private: bool) -> str | None:
    """Why an address may not be fetched from, or None when it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    for attr, why in (
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address (cloud metadata lives there)"),
        ("is_multicast", "a multicast address"),
        ("is_unspecified", "an unspecified address"),
        ("is_reserved", "a reserved address"),
    ):
        if getattr(ip, attr):
            return why
    if ip.is_private and not allow_private:
        return "a private address (set RAILSIGHT_REMOTE_ALLOW_PRIVATE to allow)"
    return None


def check_remote(url: str, settings: ServiceSettings, *, resolver: Resolver = resolve_host) -> str:
    """The URL, if remote scenes are on and this one is allowed; SceneNotAllowed otherwise."""
    if not settings.allow_remote:
        raise SceneNotAllowed("remote scenes are turned off on this service (RAILSIGHT_ALLOW_REMOTE)")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in REMOTE_SCHEMES:
        raise BadScenePath(f"unsupported scene URL scheme {scheme!r}")
    if parts.username or parts.password:
        raise BadScenePath("credentials in scene URLs are not accepted")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise BadScenePath(f"scene URL has no host: {url!r}")
    if not _host_allowed(url, scheme, host, settings.remote_allow_list):
        raise SceneNotAllowed(f"{scheme}://{host} is not on the remote allow-list (RAILSIGHT_REMOTE_ALLOW_LIST)")
    if scheme == "s3":
        return url  # a bucket; the endpoint is the operator's GDAL/AWS configuration, not the user's
    if host in METADATA_HOSTS:
        raise SceneNotAllowed(f"{host} is a cloud metadata host")
    for address in resolver(host):
        why = blocked_address(address, allow_private=settings.remote_allow_private)
        if why:
            raise SceneNotAllowed(f"{host} resolves to {address}, {why}")
    return url


def check_tiff(path: Path, what: str) -> None:
    """Only TIFF (GeoTIFF, COG, BigTIFF) is accepted from uploads and downloads."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head not in TIFF_MAGIC:
        raise NotARaster(f"{what} is not a GeoTIFF (uploads and remote scenes must be GeoTIFF or COG)")


def fetch_remote(url: str, dest: Path, settings: ServiceSettings, *, resolver: Resolver = resolve_host,
                 timeout_s: float = 60.0, what: str = "remote scene", max_bytes: int | None = None,
                 tiff: bool = True) -> Path:
    """Download an http(s) scene to ``dest`` (temporary name, then rename), following at most
    MAX_REDIRECTS redirects, each one checked like the first URL. TooLarge past max_remote_bytes
    (or ``max_bytes``); NotARaster unless it is a TIFF (where ``tiff``). ``what`` names the file in
    errors."""
    import httpx

    limit = settings.max_remote_bytes if max_bytes is None else max_bytes
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part-{os.getpid()}")
    timeout = httpx.Timeout(timeout_s, connect=15.0)
    try:
        with httpx.Client(follow_redirects=False, timeout=timeout, trust_env=False) as client:
            for _ in range(MAX_REDIRECTS + 1):
                check_remote(url, settings, resolver=resolver)
                with client.stream("GET", url) as response:
                    _check_peer(response, settings)
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status_code == 404:
                        raise SceneNotFound(f"{what} not found (HTTP 404): {url}")
                    if response.status_code != 200:
                        raise SceneError(f"{what} could not be fetched (HTTP {response.status_code}): {url}")
                    declared = int(response.headers.get("content-length") or 0)
                    if declared > limit:
                        raise TooLarge(f"{what} is {declared:,} bytes, over the limit of {limit:,}")
                    size = 0
                    with open(tmp, "wb") as fh:
                        for chunk in response.iter_bytes(1 << 20):
                            size += len(chunk)
                            if size > limit:
                                raise TooLarge(f"{what} is over the limit of {limit:,} bytes")
                            fh.write(chunk)
                if tiff:
                    check_tiff(tmp, what)
                os.replace(tmp, dest)
                return dest
        raise SceneError(f"{what} redirected more than {MAX_REDIRECTS} times: {url}")
    except httpx.HTTPError as exc:
        raise SceneError(f"{what} could not be fetched: {url} ({type(exc).__name__}: {exc})") from exc
    finally:
        if tmp.exists():
            tmp.unlink()


def fetch_view_sidecar(url: str, scene: Path, settings: ServiceSettings, *,
                       resolver: Resolver = resolve_host) -> Path | None:
    """The view of an http(s) scene from the metadata beside its URL, written beside ``scene``, the
    scene's download, as ``NAME.IMD`` (``imd_text``), where GDAL reads it with the scene as beside a
    local file. Tried in turn, query kept: the URL's file name with ``.IMD``, ``.imd``, ``.XML`` or
    ``.xml`` for its suffix (Maxar), the ``DIM_*.XML`` of an ``IMG_*`` image (Airbus), and the STAC
    or Planet JSON names ``service.scene_metadata.candidate_names`` gives. The first that records a
    view is used; None where none does (then nothing is left beside the scene). Most scenes have
    none, so nothing here fails the job."""
    parts = urlsplit(url)
    name = PurePosixPath(parts.path)
    if not name.name:
        return None
    names = [name.with_suffix(suffix).name for suffix in (".IMD", ".imd", ".XML", ".xml")]
    names += [n for n in (dimap_name(name.name),) if n] + candidate_names(Path(name.name))
    fetched, dest = scene.with_suffix(".metadata"), scene.with_suffix(".IMD")
    try:
        for sidecar_name in names:
            sidecar = urlunsplit(parts._replace(path=str(name.with_name(sidecar_name))))
            try:
                fetch_remote(sidecar, fetched, settings, resolver=resolver, what="scene's metadata",
                             max_bytes=SIDECAR_MAX_BYTES, tiff=False)
            except RailsightError:
                continue
            view = view_from_metadata_text(fetched.read_text(errors="replace"))
            if view is not None:
                dest.write_text(imd_text(view))
                return dest
    finally:
        fetched.unlink(missing_ok=True)
    return None


def _check_peer(response, settings: ServiceSettings) -> None:
    """The address actually connected to must pass the same check as the resolved ones (a DNS
    answer that changed between the check and the connection is caught here)."""
    stream = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if not peer:
        return
    why = blocked_address(str(peer[0]), allow_private=settings.remote_allow_private)
    if why:
        raise SceneNotAllowed(f"remote scene host connected to {peer[0]}, {why}")
