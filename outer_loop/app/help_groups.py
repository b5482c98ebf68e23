"""The configuration groups ``l2l-train --help`` lists: the options on disk (``conf/<group>/<option>.yaml``).

Hydra's ``$APP_CONFIG_GROUPS`` also lists the schemas l2l registers in the config store (``task/arm_schema``,
``rule/eprop_schema``), which are not choices; the help template uses ``${l2l_config_groups:}`` instead.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

RESOLVER = "l2l_config_groups"
HIDDEN = ("hydra",)
"""Groups of Hydra's own settings (launchers): listed by ``--hydra-help``."""


def config_groups(config_dir: str | Path) -> str:
    """``group: option, option, ...`` per line for every group folder of ``config_dir`` (nested groups as
    ``a/b``), Hydra's own groups left out."""
    root = Path(config_dir)
    groups: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.yaml")):
        group = path.parent.relative_to(root).as_posix()
        if group != "." and group.split("/")[0] not in HIDDEN:
            groups.setdefault(group, []).append(path.stem)
    return "".join(f"{group}: {', '.join(sorted(options))}\n" for group, options in sorted(groups.items()))


def register_config_groups(config_dir: str | Path) -> None:
    """Make ``${l2l_config_groups:}`` (the listing of :func:`config_groups`) available to the configs."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, lambda: config_groups(config_dir))
