"""Training, data set readers and offline evaluation of the learned parts — apart from the runtime.

Nothing at run time imports this package: the agent reads only the weights these pipelines write
(each next to its model card).  One module per trained component:

* ``text``, ``speech``, ``face`` — the emotion encoders (``empathic encoders train …``);
* ``datasets`` — readers of EmoBank and GoEmotions; ``evaluate`` — the generic evaluation of any
  encoder on a labelled CSV or a data set split (``empathic encoders eval``);
* ``risk``, ``clinical`` — the safety stage's risk reader (and scope check) and the clinical reader
  and reply guard (``empathic safety train …``);
* ``judge`` — the EPITOME judge and the strategy classifier (``empathic judge train …``);
* ``responder`` — the LoRA fine-tune of the embedded LLM (``empathic train responder``).
"""
