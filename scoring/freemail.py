"""Free (consumer) e-mail domains: a lead on one of these has no company behind the address.

Hand-assembled from the big consumer providers and their regional variants; a domain missing from
the list is treated as corporate, which is the safer error for fit grading (it only over-credits).
"""

from __future__ import annotations

FREE_EMAIL_DOMAINS: frozenset[str] = frozenset(
    """
    gmail.com googlemail.com yahoo.com yahoo.co.uk yahoo.co.in yahoo.fr yahoo.de yahoo.es yahoo.it yahoo.ca
    yahoo.com.au yahoo.com.br yahoo.com.mx yahoo.co.jp yahoo.com.sg yahoo.com.ar yahoo.in ymail.com rocketmail.com
    hotmail.com hotmail.co.uk hotmail.fr hotmail.de hotmail.es hotmail.it hotmail.nl hotmail.ca hotmail.com.br
    hotmail.com.au outlook.com outlook.fr outlook.de outlook.es outlook.it outlook.in outlook.com.br live.com
    live.co.uk live.fr live.de live.nl live.it live.ca live.com.au live.in msn.com passport.com windowslive.com
    aol.com aol.co.uk aol.fr aol.de aim.com icloud.com me.com mac.com
    protonmail.com protonmail.ch proton.me pm.me tutanota.com tutanota.de tuta.io
    gmx.com gmx.net gmx.de gmx.at gmx.ch gmx.fr gmx.us web.de freenet.de t-online.de arcor.de
    mail.com email.com usa.com post.com europe.com engineer.com consultant.com myself.com
    zoho.com zohomail.com yandex.com yandex.ru ya.ru mail.ru inbox.ru list.ru bk.ru rambler.ru
    qq.com 163.com 126.com yeah.net sina.com sina.cn sohu.com foxmail.com aliyun.com 139.com
    naver.com hanmail.net daum.net nate.com
    rediffmail.com rediff.com sify.com
    orange.fr wanadoo.fr free.fr laposte.net sfr.fr neuf.fr club-internet.fr
    libero.it virgilio.it tiscali.it alice.it tin.it
    terra.com.br bol.com.br uol.com.br ig.com.br
    btinternet.com sky.com talktalk.net virginmedia.com ntlworld.com blueyonder.co.uk
    comcast.net verizon.net att.net sbcglobal.net bellsouth.net cox.net charter.net earthlink.net juno.com
    optonline.net frontier.com windstream.net rogers.com shaw.ca sympatico.ca telus.net bigpond.com
    optusnet.com.au telstra.com xtra.co.nz
    seznam.cz centrum.cz wp.pl o2.pl onet.pl interia.pl
    fastmail.com fastmail.fm hushmail.com mailfence.com runbox.com posteo.de mailbox.org
    hey.com duck.com skiff.com
    """.split()  # noqa: SIM905 - one readable block beats 180 quoted strings
)


def is_free_email_domain(domain: str) -> bool:
    """True when `domain` (lower-case, no '@') is a consumer mail provider."""
    return domain.strip().lower().rstrip(".") in FREE_EMAIL_DOMAINS
