"""``python -m normlab.inspect MODULE:FACTORY --input-shape 8,3,224,224``: the command line of the doctor.

``normlab.inspect`` is a function (``from normlab import inspect``), whose code is in :mod:`normlab.inspection`.
This file only lets ``python -m normlab.inspect`` run :func:`normlab.inspection.main`. Importing it would put a
module where the function belongs (``import normlab.inspect`` makes ``normlab.inspect`` that module), so an
import is refused with the way to the function.
"""

import sys

from normlab.inspection import main

if __name__ != "__main__":
    raise ImportError(
        "normlab.inspect is a function, not a module to import: use `from normlab import inspect` or "
        "`normlab.inspect(model, x)`; the module exists only for `python -m normlab.inspect` (code: normlab.inspection)."
    )
sys.exit(main())
