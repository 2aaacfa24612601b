import CoreML
import CoreVideo
import Foundation
import ImageIO
import Vision

/// A bundled style: its contract and its .mlpackage.
public struct StyleEntry: Identifiable, Hashable {
    public let contract: ImageContract
    public let package: URL
    public var id: String { contract.file }
    public var label: String { "\(contract.style) (\(contract.precision))" }
}

/// Every `<name>.mlpackage` in the app's Styles/ folder with its `<name>.mlpackage.contract.json`.
public enum StyleCatalog {
    public static func load(bundle: Bundle = .main) -> [StyleEntry] {
        guard let dir = bundle.url(forResource: "Styles", withExtension: nil),
              let files = try? FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil)
        else { return [] }
        return files.filter { $0.lastPathComponent.hasSuffix(".mlpackage.contract.json") }.compactMap { url in
            do {
                let contract = try ImageContract.load(from: url)
                return StyleEntry(contract: contract, package: dir.appendingPathComponent(contract.file))
            } catch {
                print("StyleCatalog: skipping \(url.lastPathComponent): \(error)")
                return nil
            }
        }.sorted { $0.label < $1.label }
    }
}

/// One style running through Vision + CoreML on the chosen compute units.
public final class StyleModel {
    public let entry: StyleEntry
    public let computeUnits: MLComputeUnits
    private let request: VNCoreMLRequest

    /// Compiles the .mlpackage on first use (cached in Caches/) and loads it on `computeUnits`.
    public init(entry: StyleEntry, computeUnits: MLComputeUnits) throws {
        self.entry = entry
        self.computeUnits = computeUnits
        let config = MLModelConfiguration()
        config.computeUnits = computeUnits
        let model = try MLModel(contentsOf: try Self.compiled(entry.package), configuration: config)
        request = VNCoreMLRequest(model: try VNCoreMLModel(for: model))
        // The camera delivers 640x480 landscape buffers and the export lists 480x640: no crop, no distortion.
        request.imageCropAndScaleOption = .scaleFill
    }

    /// A camera buffer (BGRA; Vision converts to the model's RGB image) -> the stylised image, sensor-oriented.
    public func stylise(_ buffer: CVPixelBuffer) throws -> CGImage? {
        try VNImageRequestHandler(cvPixelBuffer: buffer, orientation: .up).perform([request])
        guard let observation = request.results?.first as? VNCoreMLFeatureValueObservation,
              let array = observation.featureValue.multiArrayValue else { return nil }
        return entry.contract.postprocess(array)
    }

    private static func compiled(_ package: URL) throws -> URL {
        let caches = try FileManager.default.url(for: .cachesDirectory, in: .userDomainMask, appropriateFor: nil,
                                                 create: true)
        let digest = (try? FileManager.default.attributesOfItem(atPath: package.path)[.modificationDate] as? Date)?
            .timeIntervalSince1970 ?? 0
        let target = caches.appendingPathComponent("\(package.deletingPathExtension().lastPathComponent)-\(Int(digest)).mlmodelc")
        if FileManager.default.fileExists(atPath: target.path) { return target }
        let temporary = try MLModel.compileModel(at: package)
        try? FileManager.default.removeItem(at: target)
        try FileManager.default.moveItem(at: temporary, to: target)
        return target
    }
}
