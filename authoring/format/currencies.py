"""The currencies a course may be priced in: ISO 4217's active codes, and XTR (Telegram Stars), which payments take too.

The list is kept here as written, so checking a course needs no network and no other package. When ISO adds or
withdraws a code, edit the list.
"""

from __future__ import annotations

import difflib

# ISO 4217 active currency codes (2025: XCG and ZWG added, HRK withdrawn), funds and units included.
ISO_4217 = frozenset("""
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD CAD CDF CHE
CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ
GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL
LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN
PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD
TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT
XSU XTS XUA XXX YER ZAR ZMW ZWG ZWL
""".split())
STARS = "XTR"  # Telegram Stars: not ISO 4217, but what a Telegram price is in
CURRENCIES = ISO_4217 | {STARS}

# Offered first when a mistyped code is as close to several (USS: USD before USN).
_COMMON = ("EUR", "USD", "GBP", "JPY", "CHF", "CAD", "AUD", "XTR", "SEK", "NOK", "DKK", "PLN", "BRL", "INR", "MXN")


def is_currency(code: str) -> bool:
    return code in CURRENCIES


def currency_problem(code: str) -> str:
    """What is wrong with a code that is not a currency, and the code the author probably meant."""
    upper = code.strip().upper()
    if upper in CURRENCIES:
        return f"currency {code!r} is written in capitals: {upper}"
    one_off = [c for c in sorted(CURRENCIES)
               if len(upper) == 3 and sum(a != b for a, b in zip(c, upper, strict=True)) == 1]
    near = one_off or difflib.get_close_matches(upper, sorted(CURRENCIES), n=3, cutoff=0.7)
    offered = [c for c in _COMMON if c in near][:1] or near[:3]
    hint = f"did you mean {' or '.join(offered)}? Write" if offered else "write"
    return (f"currency {code!r} is not an ISO 4217 code: {hint} the currency's three capital letters, e.g. EUR, USD "
            "or GBP (XTR for Telegram Stars)")
