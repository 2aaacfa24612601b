package com.toolkit.styledemo

import android.content.Context
import android.graphics.Bitmap
import android.util.Log
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate
import java.io.Closeable
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel

/**
 * One exported style running in the LiteRT interpreter: GPU delegate when the device supports it and the model
 * compiles for it, otherwise the CPU with XNNPACK. Pre/post-processing is the contract's (ImageContract.kt).
 */
class StyleModel(context: Context, val contract: ImageContract, assetPath: String) : Closeable {
    val height: Int
    val width: Int
    val backend: String
    private val interpreter: Interpreter
    private var gpu: GpuDelegate? = null
    private val input: ByteBuffer
    private val output: ByteBuffer
    private val inPixels: IntArray
    private val outPixels: IntArray

    init {
        require(!contract.input.dynamic) { "${contract.file}: the TFLite demo expects fixed-size artifacts" }
        val (h, w) = contract.input.sizes.first()
        height = h
        width = w
        val model = mapAsset(context, assetPath)
        var created: Interpreter? = null
        var name = "cpu"
        CompatibilityList().use { compat ->
            if (compat.isDelegateSupportedOnThisDevice) {
                var delegate: GpuDelegate? = null
                try {
                    delegate = GpuDelegate(compat.bestOptionsForThisDevice)
                    created = Interpreter(model, Interpreter.Options().addDelegate(delegate))
                    gpu = delegate
                    name = "gpu"
                } catch (e: Exception) {  // an op the delegate cannot take, or a driver failure
                    Log.w(TAG, "GPU delegate unavailable for ${contract.file}, using CPU: ${e.message}")
                    delegate?.close()
                }
            }
        }
        interpreter = created ?: Interpreter(model, Interpreter.Options().apply {
            setUseXNNPACK(true)
            setNumThreads(Runtime.getRuntime().availableProcessors().coerceIn(1, 4))
        }).also { name = "cpu (xnnpack)" }
        backend = name
        checkAgainstContract()
        input = ByteBuffer.allocateDirect(contract.inputBytes(h, w)).order(ByteOrder.nativeOrder())
        output = ByteBuffer.allocateDirect(contract.outputBytes(h, w)).order(ByteOrder.nativeOrder())
        inPixels = IntArray(h * w)
        outPixels = IntArray(h * w)
    }

    /** The interpreter's tensors must be what the contract says; a stale contract fails loudly, not silently. */
    private fun checkAgainstContract() {
        val inShape = interpreter.getInputTensor(0).shape().toList()
        val expected = if (contract.input.tensor.layout == "NHWC") listOf(1, height, width, 3) else listOf(1, 3, height, width)
        check(inShape == expected) { "${contract.file}: input shape $inShape, contract says $expected" }
        check(interpreter.getOutputTensor(0).shape().toList().reduce(Int::times) == 3 * height * width) {
            "${contract.file}: output size differs from the contract"
        }
    }

    /** A camera frame (any size, rotated by rotationDegrees) -> the upright stylised frame at the model's size. */
    fun stylise(frame: Bitmap, rotationDegrees: Int): Bitmap {
        val fitted = contract.fitFrame(frame, rotationDegrees, height, width)
        contract.preprocess(fitted, input, inPixels)
        output.rewind()
        interpreter.run(input, output)
        output.rewind()
        return contract.postprocess(output, height, width, outPixels)
    }

    override fun close() {
        interpreter.close()
        gpu?.close()
    }

    companion object {
        private const val TAG = "StyleModel"

        private fun mapAsset(context: Context, path: String): MappedByteBuffer =
            context.assets.openFd(path).use { fd ->
                FileInputStream(fd.fileDescriptor).channel.use { channel ->
                    channel.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
                }
            }
    }
}
