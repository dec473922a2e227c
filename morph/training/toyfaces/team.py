"""A fixed cast of six named people, for 'team photos' that look the same in every run."""

from __future__ import annotations

from typing import Any, Iterable, Optional

from morph.training.toyfaces.params import BALD, LONG, SHORT, FaceParams

TEAM: dict[str, dict[str, Any]] = {
    "ada": dict(hair_style=LONG, hair_light=0.15, hair_red=0.7, skin=0.08, glasses=True, glasses_round=True,
                glasses_color=0.6, smile=0.7, turn=0.3, fringe=0.9, eye_color=0.7, bg_hue=0.58, shirt_hue=0.95),
    "ben": dict(hair_style=SHORT, hair_light=0.92, skin=0.3, beard=True, smile=0.35, turn=-0.45, face_width=1.1,
                jaw=0.1, fringe=0.2, part=-0.8, eye_color=0.7, bg_hue=0.3, bg_value=0.7, shirt_hue=0.6),
    "chen": dict(hair_style=SHORT, hair_light=0.0, skin=0.22, glasses=True, glasses_color=0.1, smile=0.95,
                 fringe=1.0, part=0.5, face_width=0.95, jaw=0.4, gaze_x=0.4, bg_hue=0.12, shirt_hue=0.35),
    "dana": dict(hair_style=LONG, hair_curly=True, hair_light=0.05, skin=0.88, smile=0.55, turn=0.5, tilt=0.12,
                 face_width=0.92, jaw=0.8, eye_color=0.1, bg_hue=0.8, bg_value=0.9, shirt_hue=0.1, shirt_value=0.8),
    "eli": dict(hair_style=BALD, hair_light=0.1, skin=0.62, beard=True, glasses=True, glasses_color=0.95,
                smile=-0.3, turn=-0.25, face_width=1.08, brow_raise=-0.6, brow_thick=1.3, bg_hue=0.5, shirt_hue=0.0,
                shirt_value=0.3),
    "fay": dict(hair_style=SHORT, hair_curly=True, hair_light=0.8, hair_red=0.9, skin=0.02, glasses=True,
                glasses_round=True, glasses_color=0.35, smile=1.0, tilt=-0.15, turn=0.25, eye_color=0.5,
                bg_hue=0.45, shirt_hue=0.75, shirt_value=0.6),
}
TEAM_NAMES: tuple[str, ...] = tuple(TEAM)


def team_params(names: Optional[Iterable[str]] = None) -> FaceParams:
    """Parameters for the named team members (all of ``TEAM_NAMES`` by default), in that order."""
    names = TEAM_NAMES if names is None else tuple(names)
    unknown = [n for n in names if n not in TEAM]
    if unknown:
        raise KeyError(f"unknown team member(s) {unknown}; choose from {list(TEAM_NAMES)}")
    return FaceParams.from_records(TEAM[n] for n in names)
