"""`region_code`: ISO 3166-1 alpha-2, uppercase, known codes only.

The list is ISO 3166-1's 249 officially assigned alpha-2 codes. It is not phonenumbers'
`SUPPORTED_REGIONS`: that set lacks some ISO codes (AQ, BV, HM, ...) and adds non-ISO ones (XK).
Reserved and user-assigned codes (UK, EU, XK, ...) are not assigned by ISO 3166-1, so they are
rejected: Google's Data Manager API documents `regionCode` as ISO 3166-1 alpha-2.
"""

from __future__ import annotations

from gateway.identifiers.results import Reason, Rejected, rejection

_ASSIGNED = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS
    BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE
    EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM
    HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC
    LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA
    NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW
    SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO
    TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
    """
ISO_3166_ALPHA2: frozenset[str] = frozenset(_ASSIGNED.split())


def normalize_region(value: str, kind: str = "region_code") -> str | Rejected:
    """`value` trimmed and uppercased if it is an assigned ISO 3166-1 alpha-2 code."""
    code = value.strip()
    if not code:
        return rejection(kind, Reason.EMPTY)
    # upper() of non-ASCII text can yield ASCII ("ı" -> "I"), so test ASCII before folding case.
    if not code.isascii():
        return rejection(kind, Reason.INVALID_REGION)
    code = code.upper()
    if code not in ISO_3166_ALPHA2:
        return rejection(kind, Reason.INVALID_REGION)
    return code
