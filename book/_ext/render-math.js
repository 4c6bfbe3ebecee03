// Typesets the book's math when the book is built, so that no page loads MathJax (1.2 MB).
// Run by book/_ext/bufferbook_web.py at the end of each HTML build:
//     node book/_ext/render-math.js _build/html/a.html _build/html/b.html ...
// Each page's math arrives as Sphinx's MathJax markup, `<span class="math ...">\(TeX\)</span>`
// and `<div class="math ...">\[TeX\]</div>`; the TeX becomes MathJax's SVG output with its
// MathML copy for screen readers (assistive-mml), and the page gets MathJax's SVG stylesheet
// once. MathJax 3 comes from the `mathjax` npm package pinned in package-lock.json (its own
// Node.js entry point). A page without math is left as it is; a TeX error fails the build.
"use strict";
const fs = require("fs");

const MATH_ELEMENT = /<(span|div) class="math notranslate nohighlight"([^>]*)>([\s\S]*?)<\/\1>/g;
const DELIMITED = /\\\(([\s\S]*?)\\\)|\\\[([\s\S]*?)\\\]/g;
const STYLE_ID = "bufferbook-math-style";

function unescapeHtml(text) {
  return text.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'").replace(/&amp;/g, "&");
}

async function main(files) {
  const MathJax = await require("mathjax").init({
    loader: { load: ["input/tex", "output/svg", "a11y/assistive-mml"] },
    tex: { packages: { "[+]": ["ams"] } },
    svg: { fontCache: "local" },
    startup: { typeset: false },
  });
  const adaptor = MathJax.startup.adaptor;
  const style = `<style id="${STYLE_ID}">${adaptor.textContent(MathJax.svgStylesheet())}</style>`;
  let formulas = 0;
  let pages = 0;
  for (const file of files) {
    const html = fs.readFileSync(file, "utf8");
    let count = 0;
    const typeset = html.replace(MATH_ELEMENT, (element, tag, attributes, inner) => {
      const rendered = inner.replace(DELIMITED, (all, inline, display) => {
        const tex = unescapeHtml(inline !== undefined ? inline : display);
        const node = MathJax.tex2svg(tex, { display: display !== undefined });
        const error = adaptor.getElements(["mjx-merror", "merror"], node)[0];
        if (error) {
          throw new Error(`${file}: TeX error in ${JSON.stringify(tex)}: ` +
                          `${adaptor.getAttribute(error, "data-mjx-error") || adaptor.textContent(error)}`);
        }
        count += 1;
        return adaptor.outerHTML(node);
      });
      return `<${tag} class="math notranslate nohighlight"${attributes}>${rendered}</${tag}>`;
    });
    if (count === 0) continue;
    const styled = typeset.includes(STYLE_ID) ? typeset : typeset.replace("</head>", `${style}\n</head>`);
    fs.writeFileSync(file, styled);
    formulas += count;
    pages += 1;
  }
  if (formulas) console.log(`render-math: typeset ${formulas} formulas on ${pages} pages`);
}

main(process.argv.slice(2)).catch((error) => {
  console.error(error.message || error);
  process.exit(1);
});
