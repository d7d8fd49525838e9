"""Scripted dialogue evaluation: scenarios in, metrics and reports out.

``empathic eval run`` loads scenarios (:mod:`.scenario`), runs them through the real agent graph
(:mod:`.runner`), scores every turn (:mod:`.metrics`, :mod:`.checks`, :mod:`.empathy`), lets an LLM
play the person where asked (:mod:`.simulator`) and writes JSON + HTML reports (:mod:`.report`);
``empathic eval compare`` sets two runs side by side (:mod:`.compare`).  Nothing here is imported
by ``import empathic_agent``.
"""

__all__: list[str] = []
