"""reflow.py - the sagas of t/reflow.sh (issue 11, case 3).

  reflow.py before   Runs, on the first definition [CreateOrder,
                     CreatePayment]: rf-slow (CreateOrder takes 1.5 s),
                     rf-fail (payment fails: compensated), rf-q-0..5
                     (queued behind the one slow payment consumer).
  reflow.py after    Runs rf-new on the second definition [CreateOrder, Md].
  reflow.py check    Every saga ended as its own definition says, with the
                     participants' records to match.
  reflow.py before2  Runs $RF_PREFIX-0..5 (default rf-r) on the first
                     definition, queued behind the slow payment.
  reflow.py check2   They all ended COMPLETED on it.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sync_lib import Orch, Participant, R, S, check, equal, fail, ok  # noqa

o = Orch(int(os.environ["P_PORT"]))
FIRST = ["rf-slow"] + ["rf-q-%d" % i for i in range(6)]
PREFIX2 = os.environ.get("RF_PREFIX", "rf-r")   # before2's and check2's ids


def run(sid, ctx):
    ctx = dict(ctx, amount="3")
    o.run("AsyncBooking", ctx, sid)


def record(port, name, sid):
    return Participant(int(os.environ[port]), name).record(sid)


if sys.argv[1] == "before":
    run("rf-slow", {"delay": "order:1500"})
    run("rf-fail", {"fault": "payment"})
    for sid in FIRST[1:]:
        run(sid, {})
    ok("7 sagas started on [CreateOrder, CreatePayment]")
elif sys.argv[1] == "after":
    run("rf-new", {})
    ok("rf-new started on [CreateOrder, Md]")
elif sys.argv[1] == "check":
    versions = set()
    for sid in FIRST:
        s = o.wait_final(sid, 60)
        if not hasattr(s, "state"):
            fail("%s: %s" % (sid, s))
        equal(S.Name(s.state), "STATE_COMPLETED", sid)
        equal([st.name for st in s.steps], ["CreateOrder", "CreatePayment"],
              sid + " steps")
        equal(R.Name(record("PAYMENT_PORT", "payment", sid).state),
              "RECORD_STATE_ACTIVE", sid + " payment")
        versions.add(s.flow_version)
    s = o.wait_final("rf-fail", 60)
    equal(S.Name(s.state), "STATE_COMPENSATED", "rf-fail")
    equal(R.Name(record("ORDER_PORT", "order", "rf-fail").state),
          "RECORD_STATE_CANCELLED", "rf-fail order")
    versions.add(s.flow_version)
    n = o.wait_final("rf-new", 60)
    equal(S.Name(n.state), "STATE_COMPLETED", "rf-new")
    equal([st.name for st in n.steps], ["CreateOrder", "Md"], "rf-new steps")
    equal(R.Name(record("MD_PORT", "payment", "rf-new").state),
          "RECORD_STATE_ACTIVE", "rf-new md")
    check(len(versions) == 1 and n.flow_version not in versions and
          len(n.flow_version) == 16, "one version before, another after: "
          "%s %s" % (versions, n.flow_version))
    ok("8 sagas of the first definition and 1 of the second ended as "
       "their own definitions say")
elif sys.argv[1] == "before2":
    for i in range(6):
        run("%s-%d" % (PREFIX2, i), {})
    ok("6 sagas queued on [CreateOrder, CreatePayment] before a restart")
elif sys.argv[1] == "check2":
    for i in range(6):
        sid = "%s-%d" % (PREFIX2, i)
        s = o.wait_final(sid, 60)
        if not hasattr(s, "state"):
            fail("%s: %s" % (sid, s))
        equal(S.Name(s.state), "STATE_COMPLETED", sid)
        equal([st.name for st in s.steps], ["CreateOrder", "CreatePayment"],
              sid + " steps")
        equal(R.Name(record("PAYMENT_PORT", "payment", sid).state),
              "RECORD_STATE_ACTIVE", sid + " payment")
    ok("the 6 sagas queued before the restart ended on their definition")
else:
    fail("usage: reflow.py before|after|check|before2|check2")
