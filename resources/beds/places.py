"""Where departments lie: the approximate coordinates of each prefecture (degrees), kept in
the code (nothing is downloaded at run time), and the distance between two departments.

A transfer's candidates are ordered by the great-circle distance between the department of
the requesting establishment and that of each candidate: a coarse measure (a department is
tens of kilometres wide) that is enough to rank neighbours before regions further away.
"""

from __future__ import annotations

from functools import lru_cache
from math import asin, cos, radians, sin, sqrt

__all__ = ["CENTRES", "distance_km"]

# department code -> (latitude, longitude) of its prefecture, rounded
CENTRES: dict[str, tuple[float, float]] = {
    "01": (46.20, 5.23), "02": (49.56, 3.62), "03": (46.57, 3.33), "04": (44.09, 6.24),
    "05": (44.56, 6.08), "06": (43.70, 7.27), "07": (44.74, 4.60), "08": (49.76, 4.72),
    "09": (42.97, 1.61), "10": (48.30, 4.08), "11": (43.21, 2.35), "12": (44.35, 2.57),
    "13": (43.30, 5.37), "14": (49.18, -0.37), "15": (44.93, 2.44), "16": (45.65, 0.16),
    "17": (46.16, -1.15), "18": (47.08, 2.40), "19": (45.27, 1.77), "2A": (41.93, 8.74),
    "2B": (42.70, 9.45), "21": (47.32, 5.04), "22": (48.51, -2.76), "23": (46.17, 1.87),
    "24": (45.18, 0.72), "25": (47.24, 6.02), "26": (44.93, 4.89), "27": (49.03, 1.15),
    "28": (48.45, 1.49), "29": (48.00, -4.10), "30": (43.84, 4.36), "31": (43.60, 1.44),
    "32": (43.65, 0.59), "33": (44.84, -0.58), "34": (43.61, 3.88), "35": (48.11, -1.68),
    "36": (46.81, 1.69), "37": (47.39, 0.69), "38": (45.19, 5.72), "39": (46.67, 5.55),
    "40": (43.89, -0.50), "41": (47.59, 1.33), "42": (45.44, 4.39), "43": (45.04, 3.88),
    "44": (47.22, -1.55), "45": (47.90, 1.91), "46": (44.45, 1.44), "47": (44.20, 0.62),
    "48": (44.52, 3.50), "49": (47.47, -0.55), "50": (49.12, -1.09), "51": (48.96, 4.36),
    "52": (48.11, 5.14), "53": (48.07, -0.77), "54": (48.69, 6.18), "55": (48.77, 5.16),
    "56": (47.66, -2.76), "57": (49.12, 6.18), "58": (46.99, 3.16), "59": (50.63, 3.06),
    "60": (49.43, 2.08), "61": (48.43, 0.09), "62": (50.29, 2.78), "63": (45.78, 3.08),
    "64": (43.30, -0.37), "65": (43.23, 0.08), "66": (42.70, 2.90), "67": (48.57, 7.75),
    "68": (47.75, 7.34), "69": (45.76, 4.84), "70": (47.62, 6.15), "71": (46.31, 4.83),
    "72": (48.00, 0.20), "73": (45.56, 5.92), "74": (45.90, 6.13), "75": (48.86, 2.35),
    "76": (49.44, 1.10), "77": (48.54, 2.66), "78": (48.80, 2.13), "79": (46.32, -0.46),
    "80": (49.89, 2.30), "81": (43.93, 2.15), "82": (44.02, 1.35), "83": (43.12, 5.93),
    "84": (43.95, 4.81), "85": (46.67, -1.43), "86": (46.58, 0.34), "87": (45.83, 1.26),
    "88": (48.17, 6.45), "89": (47.80, 3.57), "90": (47.64, 6.86), "91": (48.63, 2.44),
    "92": (48.89, 2.21), "93": (48.91, 2.44), "94": (48.79, 2.46), "95": (49.04, 2.08),
    "971": (16.24, -61.53), "972": (14.60, -61.07), "973": (4.94, -52.33),
    "974": (-20.88, 55.45), "976": (-12.78, 45.23),
}  # fmt: skip


@lru_cache(maxsize=16384)  # 101 departments: every pair fits
def distance_km(a: str | None, b: str | None) -> int | None:
    """The great-circle distance between two departments' prefectures (None if unknown)."""
    if a is None or b is None:
        return None
    pa, pb = CENTRES.get(a), CENTRES.get(b)
    if pa is None or pb is None:
        return None
    if pa == pb:
        return 0
    lat1, lon1, lat2, lon2 = map(radians, (*pa, *pb))
    h = sin((lat2 - lat1) / 2) ** 2 + cos(lat1) * cos(lat2) * sin((lon2 - lon1) / 2) ** 2
    return round(2 * 6371 * asin(sqrt(h)))
