package com.toolkit.styledemo

import android.content.res.AssetManager
import android.util.Log
import kotlin.math.abs
import kotlin.math.ln

/** A shipped artifact: its contract and where it lies in the assets. */
data class StyleEntry(val contract: ImageContract, val assetPath: String)

/**
 * The styles bundled in assets/styles/ (copied from the toolkit's exported/ by the syncStyles Gradle task): every
 * `<file>.tflite` with its `<file>.tflite.contract.json`. A style may ship several fixed sizes and precisions.
 */
class StyleCatalog(assets: AssetManager) {
    val entries: List<StyleEntry> = (assets.list(DIR) ?: emptyArray())
        .filter { it.endsWith(".tflite.contract.json") }
        .mapNotNull { name ->
            try {
                val contract = ImageContract.parse(assets.open("$DIR/$name").bufferedReader().use { it.readText() })
                if (contract.target != "tflite") null else StyleEntry(contract, "$DIR/${contract.file}")
            } catch (e: Exception) {
                Log.w("StyleCatalog", "skipping $name: ${e.message}")
                null
            }
        }

    /** "frost (fp32)", ... one per style and precision, in a stable order. */
    val names: List<String> = entries.map { label(it) }.distinct().sorted()

    /** The artifact of a picked style whose fixed size best fits an upright frame of srcHeight x srcWidth. */
    fun best(name: String, srcHeight: Int, srcWidth: Int): StyleEntry {
        val aspect = srcWidth.toDouble() / srcHeight
        return entries.filter { label(it) == name }.minBy { e ->
            val (h, w) = e.contract.input.sizes.first()
            abs(ln(w.toDouble() / h / aspect)) * 1e6 + h * w  // closest aspect first, then the smaller (faster)
        }
    }

    private fun label(e: StyleEntry) = "${e.contract.style} (${e.contract.precision})"

    companion object {
        const val DIR = "styles"
    }
}
