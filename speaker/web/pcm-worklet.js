// An AudioWorklet that turns the microphone into 16-bit little-endian mono PCM.
// It posts an Int16Array of `chunk` samples (processorOptions.chunk, default 4096) at the
// context's sample rate to the page, which streams or stores them.
class PcmCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.chunk = (options.processorOptions && options.processorOptions.chunk) || 4096;
    this.buffer = new Int16Array(this.chunk);
    this.filled = 0;
    this.port.onmessage = (e) => { if (e.data === 'flush') this.flush(); };
  }
  flush() {
    if (this.filled > 0) {
      this.port.postMessage(this.buffer.slice(0, this.filled));
      this.filled = 0;
    }
  }
  process(inputs) {
    const input = inputs[0];
    if (input && input.length > 0) {
      const n = input[0].length;
      for (let i = 0; i < n; i++) {
        let s = 0;                                 // mix the channels down to mono
        for (let c = 0; c < input.length; c++) s += input[c][i];
        s = Math.max(-1, Math.min(1, s / input.length));
        this.buffer[this.filled++] = s < 0 ? s * 32768 : s * 32767;
        if (this.filled === this.chunk) {
          this.port.postMessage(this.buffer);
          this.buffer = new Int16Array(this.chunk);
          this.filled = 0;
        }
      }
    }
    return true;
  }
}
registerProcessor('pcm-capture', PcmCapture);
