import qrcode from 'qrcode-generator';
import { useMemo } from 'react';

/** The dark modules of a QR code for text as one SVG path, or null when it does not fit. */
export function qrPath(text: string): { size: number; d: string } | null {
  try {
    const qr = qrcode(0, 'L');
    qr.addData(text, 'Byte');
    qr.make();
    const n = qr.getModuleCount();
    let d = '';
    for (let r = 0; r < n; r++) {
      for (let c = 0; c < n; c++) {
        if (qr.isDark(r, c)) d += `M${c} ${r}h1v1h-1z`;
      }
    }
    return { size: n, d };
  } catch {
    return null;
  }
}

/** A QR code drawn as inline SVG (the CSP allows no data: images). */
export function QRCode({ text, label }: { text: string; label: string }) {
  const qr = useMemo(() => qrPath(text), [text]);
  if (!qr) return <p className="muted">Too long for a QR code: copy the text instead.</p>;
  const m = 4; // quiet zone
  return (
    <svg
      className="qr"
      role="img"
      aria-label={label}
      viewBox={`${-m} ${-m} ${qr.size + 2 * m} ${qr.size + 2 * m}`}
      shapeRendering="crispEdges"
    >
      <rect x={-m} y={-m} width={qr.size + 2 * m} height={qr.size + 2 * m} fill="#fff" />
      <path d={qr.d} fill="#000" />
    </svg>
  );
}
