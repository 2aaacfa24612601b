import CoreGraphics
import CoreML
import Foundation

/// ALL image pre/post-processing of the app, driven by the model contract `<artifact>.contract.json` written by
/// the toolkit exporter (toolkit/export/contract.py; same field names as here, in Android and in the web demo).
///
/// CoreML exports take an RGB *image* (layout "IMAGE": Vision scales the camera buffer to the model's size and the
/// model divides by 255 itself) and return an NCHW float tensor; for the output:
///     pixel = clamp(round((value - range[0]) / (range[1] - range[0]) * 255), 0, 255)
public struct ImageContract: Codable, Hashable {
    public struct Tensor: Codable, Hashable {
        public let name: String
        public let layout: String        // "IMAGE" | "NCHW" | "NHWC"
        public let dtype: String         // "image" | "float32" | "float16"
        public let color: String         // "RGB"
        public let range: [Double]
    }

    public struct Input: Codable, Hashable {
        public let name: String
        public let layout: String
        public let dtype: String
        public let color: String
        public let dynamic: Bool
        public let sizes: [[Int]]        // [height, width] pairs the artifact accepts
        public let sizeMultiple: Int
        public let scale: Double
        public let mean: [Double]
        public let std: [Double]
        public let range: [Double]

        enum CodingKeys: String, CodingKey {
            case name, layout, dtype, color, dynamic, sizes, scale, mean, std, range
            case sizeMultiple = "size_multiple"
        }
    }

    public static let version = 1

    public let contract: Int
    public let style: String
    public let target: String
    public let precision: String
    public let file: String
    public let input: Input
    public let output: Tensor

    public enum Problem: Error, CustomStringConvertible {
        case unsupported(String)
        public var description: String {
            switch self { case .unsupported(let text): return text }
        }
    }

    /// Decode and check a contract; anything this app cannot honour is an error naming the field.
    public static func load(from url: URL) throws -> ImageContract {
        let c = try JSONDecoder().decode(ImageContract.self, from: Data(contentsOf: url))
        guard c.contract == version else { throw Problem.unsupported("contract version \(c.contract), expected \(version)") }
        guard c.target == "coreml" else { throw Problem.unsupported("\(c.file): target \(c.target), this app runs coreml") }
        guard c.input.layout == "IMAGE", c.input.color == "RGB" else {
            throw Problem.unsupported("\(c.file): input \(c.input.layout)/\(c.input.color), this app feeds RGB images")
        }
        guard c.output.layout == "NCHW", ["float32", "float16"].contains(c.output.dtype) else {
            throw Problem.unsupported("\(c.file): output \(c.output.layout) \(c.output.dtype), expected NCHW float")
        }
        return c
    }

    /// The listed [height, width] whose aspect ratio best matches a frame of the given size.
    public func bestSize(height: Int, width: Int) -> (height: Int, width: Int)? {
        let aspect = Double(width) / Double(height)
        return input.sizes
            .min { abs(log(Double($0[1]) / Double($0[0]) / aspect)) < abs(log(Double($1[1]) / Double($1[0]) / aspect)) }
            .map { ($0[0], $0[1]) }
    }

    /// The output tensor (1, 3, H, W), float32 or float16, any strides -> an opaque RGB CGImage.
    public func postprocess(_ array: MLMultiArray) -> CGImage? {
        let shape = array.shape.map(\.intValue), strides = array.strides.map(\.intValue)
        guard shape.count == 4, shape[1] == 3 else { return nil }
        let (h, w) = (shape[2], shape[3])
        let lo = output.range[0], k = 255.0 / (output.range[1] - output.range[0])
        var rgba = [UInt8](repeating: 255, count: 4 * h * w)
        func byte(_ v: Double) -> UInt8 { UInt8(max(0, min(255, ((v - lo) * k).rounded()))) }
        func fill<T>(_ p: UnsafeMutablePointer<T>, _ value: (T) -> Double) {
            for y in 0..<h {
                for x in 0..<w {
                    let base = y * strides[2] + x * strides[3], o = 4 * (y * w + x)
                    for c in 0..<3 { rgba[o + c] = byte(value(p[base + c * strides[1]])) }
                }
            }
        }
        switch array.dataType {
        case .float32: fill(array.dataPointer.assumingMemoryBound(to: Float.self)) { Double($0) }
        #if arch(arm64)
        case .float16: fill(array.dataPointer.assumingMemoryBound(to: Float16.self)) { Double($0) }
        #endif
        case .double: fill(array.dataPointer.assumingMemoryBound(to: Double.self)) { $0 }
        default: return nil
        }
        guard let provider = CGDataProvider(data: Data(rgba) as CFData) else { return nil }
        return CGImage(width: w, height: h, bitsPerComponent: 8, bitsPerPixel: 32, bytesPerRow: 4 * w,
                       space: CGColorSpaceCreateDeviceRGB(),
                       bitmapInfo: CGBitmapInfo(rawValue: CGImageAlphaInfo.noneSkipLast.rawValue),
                       provider: provider, decode: nil, shouldInterpolate: true, intent: .defaultIntent)
    }
}
