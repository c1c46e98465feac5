"""Each subscriber's own picks of the day ("For you"), learnt from what they keep and ask for.

``Interests`` and the result types are light; the ranking (numpy, scikit-learn) is in
``newsletter.personal.rank``: ``prepare_day`` once per day, then ``rank`` per subscriber.
A library as a subscriber gives it (ids, a BibTeX or RIS export) is read by
``newsletter.personal.library``; ``newsletter.personal.fetch`` finds the texts of the papers
it names by arXiv id alone.
"""

from __future__ import annotations

from newsletter.personal.interests import (
    ForYou,
    ForYouPick,
    Interests,
    LibraryPaper,
    SubscriberInterests,
)

__all__ = ["ForYou", "ForYouPick", "Interests", "LibraryPaper", "SubscriberInterests"]
